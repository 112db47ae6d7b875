"""A registry on this machine (Debian's docker-registry, started by images/registry.py) and pushing the images
to it: each push names the image by digest, and what a pull of that digest gets is the image built here."""

import json
import re
import shutil
import socket
import subprocess
import sys

import pytest
from conftest import ROOT, require_image, service_environment, wait_for_health
from support import docker, free_port, image_tag
from test_readme import readme_sh_blocks

from images import platforms, registry


def images_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "images", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A registry of this test's own, on a free loopback port, with its storage in a temporary folder."""
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed: bash scripts/setup.sh installs it")
    state = tmp_path_factory.mktemp("registry")
    address = f"127.0.0.1:{free_port()}"
    registry.start(address, state)
    yield address, state
    registry.stop(state)


def test_the_registry_configuration_serves_http_on_the_address_with_storage_in_the_folder(tmp_path):
    text = registry.config_text("127.0.0.1:5999", tmp_path)
    assert "  addr: 127.0.0.1:5999\n" in text and f"    rootdirectory: {tmp_path}\n" in text


def test_pinning_names_each_pushed_variant_by_digest_in_the_kubernetes_manifests_and_nothing_else(tmp_path):
    shutil.copytree(registry.KUBERNETES, tmp_path, dirs_exist_ok=True)
    before = (tmp_path / "deployment.yaml").read_text().splitlines()
    pushed = registry.Pushed("distroless", "registry.example:5000/hello-api:distroless", "sha256:" + "a" * 64,
                             ("amd64", "arm64"))
    assert registry.pin([pushed], tmp_path) == [tmp_path / "deployment.yaml"]
    after = (tmp_path / "deployment.yaml").read_text().splitlines()
    changed = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert [new.strip() for _, new in changed] == [f"image: {pushed.pinned}"]
    again = registry.Pushed("distroless", "other.example/hello-api:distroless", "sha256:" + "b" * 64, ("amd64",))
    registry.pin([again], tmp_path)  # a pinned reference is recognised and pinned again
    assert f"image: {again.pinned}\n" in (tmp_path / "deployment.yaml").read_text()
    micro = registry.Pushed("micro", "registry.example:5000/hello-api:micro", "sha256:" + "c" * 64, ("amd64",))
    assert registry.pin([micro], tmp_path) == []  # no manifest runs micro


def test_the_kubernetes_deployment_names_its_image_by_digest():
    references = [m["reference"] for m in registry.IMAGE_LINE.finditer(
        (registry.KUBERNETES / "deployment.yaml").read_text())]
    assert references and all(registry.variant_named(r) == "distroless" for r in references)
    assert all(re.fullmatch(r"\S+/hello-api:distroless@sha256:[0-9a-f]{64}", r) for r in references), references


@pytest.mark.docker
def test_a_started_registry_answers_the_distribution_api_and_stops(served):
    address, state = served
    assert registry.answers(address)
    assert registry.running_pid(state) is not None


@pytest.mark.docker
def test_a_second_start_on_a_taken_port_says_so_in_one_line(served, tmp_path):
    address, _ = served
    port = free_port()
    taken = f"127.0.0.1:{port}"
    with socket.socket() as holder:  # something else listens there
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = images_command("registry", "start", "--address", taken)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "docker-registry did not answer at " + taken in result.stderr
    assert registry.answers(address)  # the other one is untouched


@pytest.mark.docker
def test_pushing_where_no_registry_answers_is_a_one_line_error(engine):
    require_image("micro")
    result = images_command("push", "micro", "--registry", f"127.0.0.1:{free_port()}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "no registry answers at 127.0.0.1:" in result.stderr and "images registry start" in result.stderr
    unknown = images_command("push", "tiny")
    assert unknown.returncode == 2 and "tiny: name variants among slim, distroless, micro, lb" in unknown.stderr


@pytest.mark.docker
def test_a_pushed_image_is_named_by_a_digest_that_pulls_the_same_image(served):
    address, _ = served
    local = image_tag(require_image("micro"))
    result = images_command("push", "micro", "--registry", address)
    assert result.returncode == 0, result.stderr[-2000:]
    reference, digest = result.stdout.strip().rsplit("@", 1)
    assert reference == f"{address}/hello-api:micro" and digest.startswith("sha256:")
    # Another reader of the registry (skopeo, not this project's code) finds the same digest and the config.
    inspected = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{reference}"],
                               capture_output=True, text=True, timeout=120)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Digest"] == digest
    served_digest, manifest = registry.manifest(reference)
    assert served_digest == digest
    if "manifests" in manifest:  # built here for both platforms: an index, whose entry for this machine is the image
        native = next(m for m in manifest["manifests"] if m["platform"]["architecture"] == platforms.native())
        _, manifest = registry.manifest(f"{reference.rpartition(':')[0]}@{native['digest']}")
    assert len(manifest["layers"]) == len(layers(local))
    # A pull by digest, the tags the push left here gone, gives back the very image: the same ID.
    for tag in (reference, *(f"{reference}-{architecture}" for architecture in platforms.ARCHITECTURES)):
        docker("rmi", tag, check=False)
    pulled = docker("pull", f"{reference}@{digest}")
    assert pulled.returncode == 0, pulled.stderr
    assert image_id(f"{reference}@{digest}") == image_id(local)
    assert layers(f"{reference}@{digest}") == layers(local)
    docker("rmi", f"{reference}@{digest}")


def image_id(tag: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()


def layers(tag: str) -> list[str]:
    """The image's layers as the digests of their uncompressed tars (the same on every image store)."""
    return json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", tag).stdout)


@pytest.mark.docker
@pytest.mark.emulated
def test_one_tag_names_both_platforms_and_each_pulls_and_serves(served):
    """Built for amd64 and arm64, micro is pushed as one index; a pull for either platform gets that
    platform's image, and each one answers (arm64 under QEMU)."""
    address, _ = served
    for architecture in platforms.ARCHITECTURES:
        require_image(f"micro{'' if platforms.is_native(architecture) else '-' + architecture}")
    result = images_command("push", "micro", "--registry", address)
    assert result.returncode == 0, result.stderr[-2000:]
    reference, digest = result.stdout.strip().rsplit("@", 1)
    raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{reference}"],
                         capture_output=True, text=True, timeout=120)
    assert raw.returncode == 0, raw.stderr
    index = json.loads(raw.stdout)
    assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
    assert registry.manifest(reference)[0] == digest
    for architecture in platforms.ARCHITECTURES:
        pulled = f"{reference}@{digest}"
        docker("pull", "--platform", f"linux/{architecture}", pulled)
        assert docker("image", "inspect", "--format", "{{.Architecture}}", pulled).stdout.strip() == architecture
        local = platforms.tagged(image_tag("micro"), architecture)
        assert layers(pulled) == layers(local)  # the very layers built here for that platform
        name = f"hello-api-registry-{architecture}"
        port = free_port()
        docker("run", "-d", "--name", name, "--platform", f"linux/{architecture}", "-p", f"127.0.0.1:{port}:5000",
               pulled)
        try:
            wait_for_health(f"http://127.0.0.1:{port}", seconds=60)
        finally:
            docker("rm", "-f", name, check=False)
            docker("rmi", pulled, check=False)


@pytest.mark.docker
@pytest.mark.emulated
def test_the_readme_block_runs_as_written_and_each_comment_holds(engine):
    build, *block = readme_sh_blocks("From a registry")[0]
    # scripts/test.sh has built every platform's images just before the tests: the same command.
    assert build[0] == "bash scripts/images.sh build --platform all"
    docker("rm", "-f", "pulled", check=False)
    docker("rmi", "127.0.0.1:5050/hello-api:micro", check=False)  # a pull, not an image left here, must serve
    try:
        for command, comment in block:
            result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=1800,
                                    env=service_environment())
            assert result.returncode == 0, (command, result.stderr[-2000:])
            if comment.startswith("{"):
                assert json.loads(result.stdout) == json.loads(comment), command
            elif comment.startswith("prints "):
                pinned = result.stdout.strip()
                assert re.fullmatch(re.escape(comment.removeprefix("prints ").removesuffix("...")) + "[0-9a-f]{64}",
                                    pinned), pinned
            elif comment.startswith("an index: "):
                index = json.loads(result.stdout)
                assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"]
            if command.startswith("docker run"):
                image = docker("inspect", "--format", "{{.Image}}", "pulled").stdout.strip()
                assert docker("image", "inspect", "--format", "{{.Architecture}}", image).stdout.strip() == "arm64"
    finally:
        docker("rm", "-f", "pulled", check=False)
        images_command("registry", "stop")
