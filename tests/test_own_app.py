"""Your own app in the images (README, "Your own app"): the tutorial's Flask app (examples/flask-tutorial) built
by `python -m images app`, passing its own tests in slim and distroless; the README's block run as written;
micro refusing another app; wrong arguments refused before anything is built."""

import json
import re
import subprocess
import sys
import time
import uuid

import pytest
from conftest import ROOT, service_environment, unavailable
from support import docker, free_port

from images import app as own_app
from images import bases
from images.docker import DockerError, image_exists
from images.variants import VARIANTS, Builder

EXAMPLE = "examples/flask-tutorial"
SOURCE, LOCK, WSGI = f"{EXAMPLE}/tutorial", f"{EXAMPLE}/requirements.lock", "tutorial.app:app"
COMMENT = re.compile(r"\s{2,}#\s?(.*)$")


def readme_block() -> list[tuple[str, str]]:
    """The README's "Your own app" sh block as (command, comment), continuation lines joined."""
    section = (ROOT / "README.md").read_text().split("\n## Your own app\n", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)[0].replace("\\\n", " ")
    lines = []
    for line in block.splitlines():
        match = COMMENT.search(line)
        lines.append((line[:match.start()].strip(), match[1].strip()) if match else (line.strip(), ""))
    return lines


def the_apps_tests(port: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unittest", "discover", "-s", f"{EXAMPLE}/tests"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env=service_environment(TUTORIAL_URL=f"http://127.0.0.1:{port}"))


def healthy(name: str, seconds: float = 60) -> bool:
    """Docker's own health check passed (the image's HEALTHCHECK, against this app)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = docker("inspect", "--format", "{{.State.Health.Status}}", name, check=False).stdout.strip()
        if status in ("healthy", "unhealthy"):
            return status == "healthy"
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def tutorial_images(engine) -> dict[str, str]:
    """tutorial:slim and :distroless under a repository of this run's, built as the README builds them."""
    if not all(image_exists(base) for base in (bases.SLIM_BASE, bases.DISTROLESS_BASE)):
        unavailable("the local bases are not made: run python -m images build")
    repository = f"hello-api-own-{uuid.uuid4().hex[:8]}"
    result = subprocess.run([sys.executable, "-m", "images", "app", SOURCE, "--lock", LOCK, "--wsgi", WSGI,
                             "--tag", repository, "--offline"], cwd=ROOT, capture_output=True, text=True,
                            timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    yield {variant: f"{repository}:{variant}" for variant in own_app.APP_VARIANTS}
    for variant in own_app.APP_VARIANTS:
        docker("rmi", "-f", f"{repository}:{variant}", check=False)


@pytest.mark.docker
@pytest.mark.parametrize("variant", own_app.APP_VARIANTS)
def test_the_tutorial_app_passes_its_own_tests_in_each_image_and_stops_cleanly(tutorial_images, variant):
    name, port = f"hello-api-own-{uuid.uuid4().hex[:8]}", free_port()
    docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:5000", tutorial_images[variant])
    try:
        assert healthy(name), docker("logs", name, check=False).stderr[-2000:]
        tests = the_apps_tests(port)
        assert tests.returncode == 0 and tests.stderr.rstrip().endswith("OK"), tests.stderr[-2000:]
        assert docker("inspect", "--format", "{{.Config.User}}", name).stdout.strip() == "65532:65532"
        docker("stop", name)
        assert docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
        logs = docker("logs", name)
        assert "serving APP_WSGI=tutorial.app:app on " in logs.stderr and "Traceback" not in logs.stderr
        assert " GET /page/" in logs.stdout  # the access log, as for hello-api
    finally:
        docker("rm", "-f", name, check=False)


@pytest.mark.docker
@pytest.mark.parametrize("variant", own_app.APP_VARIANTS)
def test_the_sbom_of_an_own_app_image_names_each_locked_package_and_the_apps_files(tutorial_images, variant):
    found = docker("run", "--rm", "--entrypoint", "python3" if variant == "slim" else "/usr/bin/python3",
                   tutorial_images[variant], "-c",
                   "print(open('/usr/share/doc/hello-api/sbom.json').read())").stdout
    components = {c["name"]: c for c in json.loads(found)["components"]}
    for package in ("waitress", "Flask", "Jinja2", "MarkupSafe", "Werkzeug", "click", "blinker", "itsdangerous"):
        assert components[package].get("components"), package  # with its files
    markupsafe = {f["name"] for f in components["MarkupSafe"]["components"]}
    assert any(path.startswith("/app/deps/markupsafe/_speedups.") and path.endswith(".so") for path in markupsafe)
    app_files = {f["name"] for f in components["tutorial"]["components"]}
    assert {"/app/tutorial/app.py", "/app/tutorial/templates/page.html"} <= app_files


@pytest.mark.docker
def test_the_readme_block_builds_and_serves_the_tutorial_app_as_written(engine):
    block = readme_block()
    assert block[0][0].startswith("bash scripts/images.sh app ")
    subprocess.run(["docker", "rm", "-f", "tutorial"], capture_output=True)
    try:
        for command, comment in block:
            result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=1200,
                                    env=service_environment())
            assert result.returncode == 0, f"{command!r} failed: {result.stderr[-2000:]}"
            if comment.startswith("{"):
                assert json.loads(result.stdout) == json.loads(comment), command
            elif comment == "OK":
                assert result.stderr.rstrip().endswith("OK"), result.stderr[-2000:]
    finally:
        subprocess.run(["docker", "rm", "-f", "tutorial"], capture_output=True)


@pytest.mark.docker
def test_micro_refuses_another_app_and_says_why(engine):
    if not all(image_exists(base) for base in (bases.SLIM_BASE, bases.DISTROLESS_BASE)):
        unavailable("the local bases are not made: run python -m images build")
    tag = f"hello-api-own-{uuid.uuid4().hex[:8]}:micro"
    with pytest.raises(DockerError) as refused:
        Builder(offline=True).build(VARIANTS["micro"], own_app.build_arguments(SOURCE, LOCK, WSGI), tag=tag)
    assert "APP_WSGI=tutorial.app:app: micro's trace drives hello-api's own endpoints" in str(refused.value)
    assert "build your app on Dockerfile or Dockerfile.distroless" in str(refused.value)
    assert not image_exists(tag)


@pytest.mark.parametrize(("arguments", "said"), [
    ((SOURCE, LOCK, "app:app"), "must import from tutorial"),
    ((SOURCE, LOCK, "tutorial.app"), "expected MODULE:NAME"),
    ((SOURCE, LOCK, ""), "must import from tutorial"),
    (("examples/nowhere", LOCK, WSGI), "is not a folder of this checkout"),
    ((SOURCE, "examples/flask-tutorial/none.lock", WSGI), "is not a file of this checkout"),
    (("/etc", LOCK, WSGI), "must be a path inside this checkout"),
    ((f"{SOURCE}/../../..", LOCK, WSGI), "must be a path inside this checkout"),
    (("examples", LOCK, "examples:app"), "add the line !examples/ to .dockerignore"),
    ((SOURCE, f"{EXAMPLE}/tests/test_tutorial.py", WSGI), "pins no waitress"),
])
def test_images_app_refuses_arguments_that_cannot_build_before_building(arguments, said):
    with pytest.raises(own_app.AppError, match=re.escape(said)):
        own_app.build_arguments(*arguments)
    assert own_app.build_arguments(SOURCE, LOCK, WSGI)[1] == f"APP_SOURCE={SOURCE}"
