"""The one way every image is built (images.docker.build): through buildx with --load where the client has the
plugin, else a 20.10 client's built-in BuildKit; checked against a stand-in docker client that records its
arguments."""

import stat

import pytest

from images import docker as docker_cli


@pytest.fixture
def client(tmp_path, monkeypatch):
    """A fake `docker`: records each call's arguments (and DOCKER_BUILDKIT); `buildx version` fails unless the
    plugin is 'installed'."""
    calls, plugin = tmp_path / "calls", tmp_path / "has-buildx"
    fake = tmp_path / "docker"
    fake.write_text(f"""#!/bin/sh
echo "DOCKER_BUILDKIT=$DOCKER_BUILDKIT $*" >> {calls}
if [ "$1 $2" = "buildx version" ] && [ ! -e {plugin} ]; then echo "'buildx' is not a docker command" >&2; exit 1; fi
exit 0
""")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("DOCKER", str(fake))
    docker_cli.build_command.cache_clear()
    yield calls, plugin
    docker_cli.build_command.cache_clear()


def test_a_client_with_buildx_builds_through_it_and_loads_the_image_into_the_engine(client, tmp_path):
    calls, plugin = client
    plugin.touch()
    docker_cli.build(tmp_path, "-t", "x:y", "-f", "Dockerfile")
    last = calls.read_text().splitlines()[-1]
    assert last == f"DOCKER_BUILDKIT=1 buildx build --load -t x:y -f Dockerfile {tmp_path}"


def test_a_client_without_buildx_builds_with_its_own_buildkit(client, tmp_path):
    calls, _ = client
    docker_cli.build(tmp_path, "-t", "x:y")
    assert calls.read_text().splitlines()[-1] == f"DOCKER_BUILDKIT=1 build -t x:y {tmp_path}"
