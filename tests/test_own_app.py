"""Your own app in the images (README, "Your own app"): the tutorial's Flask app (examples/flask-tutorial) built
by `python -m images app`, passing its own tests in slim, distroless and micro (whose trace ran them); micro's
manifest naming what only those tests needed; the cut image checked against the same tests; the README's block
run as written; wrong arguments refused before anything is built."""

import json
import re
import shutil
import subprocess
import sys
import time
import uuid

import pytest
from conftest import ROOT, service_environment, unavailable
from support import docker, free_port
from test_readme import readme_sh_blocks

from images import app as own_app
from images import bases
from images.docker import DockerError, build_command, image_exists
from images.variants import VARIANTS, Builder

EXAMPLE = "examples/flask-tutorial"
SOURCE, LOCK, WSGI, TESTS = (f"{EXAMPLE}/tutorial", f"{EXAMPLE}/requirements.lock", "tutorial.app:app",
                             f"{EXAMPLE}/tests")


def readme_block() -> list[tuple[str, str]]:
    """The README's "Your own app" sh block as (command, comment), continuation lines joined."""
    return readme_sh_blocks("Your own app")[0]


def the_apps_tests(port: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unittest", "discover", "-s", f"{EXAMPLE}/tests"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env=service_environment(BASE_URL=f"http://127.0.0.1:{port}"))


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
                             "--tests", TESTS, "--tag", repository, "--offline"], cwd=ROOT, capture_output=True,
                            text=True, timeout=1200)
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
    found = read_file(tutorial_images[variant], "/usr/share/doc/hello-api/sbom.json")
    components = {c["name"]: c for c in json.loads(found)["components"]}
    for package in ("waitress", "Flask", "Jinja2", "MarkupSafe", "Werkzeug", "click", "blinker", "itsdangerous"):
        assert components[package].get("components"), package  # with its files
    markupsafe = {f["name"] for f in components["MarkupSafe"]["components"]}
    assert any(path.startswith("/app/deps/markupsafe/_speedups.") and path.endswith(".so") for path in markupsafe)
    app_files = {f["name"] for f in components["tutorial"]["components"]}
    module = "/app/tutorial/app.pyc" if variant == "micro" else "/app/tutorial/app.py"  # micro: bytecode only
    assert {module, "/app/tutorial/templates/page.html"} <= app_files


def read_file(image: str, path: str) -> str:
    return docker("run", "--rm", "--entrypoint", "python3" if image.endswith(":slim") else "/usr/bin/python3",
                  image, "-c", f"print(open({path!r}).read(), end='')").stdout


@pytest.mark.docker
def test_micros_manifest_names_what_only_the_apps_own_tests_needed(tutorial_images):
    manifest = {line.split("\t")[0]: line.split("\t")[3]
                for line in read_file(tutorial_images["micro"], "/usr/share/hello-api/manifest.tsv").splitlines()
                if not line.startswith("#")}
    # the page's lazy import, its C extension and the zone's data file: reached only by the app's tests
    assert "loaded only in run app-command" in manifest["/usr/lib/python3.13/zoneinfo/__init__.pyc"]
    zoneinfo_extension = next(path for path in manifest if "/lib-dynload/_zoneinfo." in path)
    assert manifest[zoneinfo_extension] == "extension module _zoneinfo; mapped by run app-command"
    assert manifest["/usr/share/zoneinfo/Asia/Tokyo"] == "opened by run app-command"
    assert manifest["/app/tutorial/templates/page.html"] == "opened by run app-command"
    assert "/usr/share/zoneinfo/Europe/Paris" not in manifest  # no run asked for it: cut, as TRACE_KEEP says


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
def test_micro_of_another_app_needs_its_command_and_says_why(engine):
    if not all(image_exists(base) for base in (bases.SLIM_BASE, bases.DISTROLESS_BASE)):
        unavailable("the local bases are not made: run python -m images build")
    tag = f"hello-api-own-{uuid.uuid4().hex[:8]}:micro"
    with pytest.raises(DockerError) as refused:
        Builder(offline=True).build(VARIANTS["micro"], own_app.build_arguments(SOURCE, LOCK, WSGI), tag=tag)
    assert "APP_WSGI=tutorial.app:app: give the command that drives the app" in str(refused.value)
    assert not image_exists(tag)


TWICE = """import os, pathlib, unittest, urllib.request

MARK = pathlib.Path(__file__).with_name("ran-once")


class Twice(unittest.TestCase):
    def test_hello_then_on_the_cut_image_a_page(self):
        if MARK.exists():  # the second run, against the cut image: a page the traced run never asked for
            urllib.request.urlopen(os.environ["BASE_URL"] + "/page/x?zone=Asia/Tokyo", timeout=10)
        else:
            MARK.write_text("")
            urllib.request.urlopen(os.environ["BASE_URL"] + "/hello/x", timeout=10)
"""


@pytest.mark.docker
def test_the_build_fails_when_the_cut_image_fails_the_command_the_trace_passed(engine, tmp_path):
    """The command passes while the trace records; the second time, against the kept files alone, it asks for a
    page no run reached: the build stops, saying so."""
    if not all(image_exists(base) for base in (bases.SLIM_BASE, bases.DISTROLESS_BASE)):
        unavailable("the local bases are not made: run python -m images build")
    context = tmp_path / "context"
    for name in ("service", "images", "examples"):
        shutil.copytree(ROOT / name, context / name, ignore=shutil.ignore_patterns("__pycache__", ".generated"))
    for name in ("requirements.lock", ".dockerignore"):
        shutil.copy2(ROOT / name, context / name)
    (context / EXAMPLE / "tests-twice").mkdir()
    (context / EXAMPLE / "tests-twice" / "test_twice.py").write_text(TWICE)
    with (context / ".dockerignore").open("a") as allowed:
        allowed.write(f"!{EXAMPLE}/tests-twice/\n")
    arguments = [*own_app.build_arguments(SOURCE, LOCK, WSGI)[:8], "--build-arg", f"TRACE_TESTS={EXAMPLE}/tests-twice",
                 "--build-arg", f"TRACE_COMMAND={own_app.DEFAULT_COMMAND}"]
    tag = f"hello-api-own-{uuid.uuid4().hex[:8]}:micro"
    built = docker(*build_command(), *Builder(offline=True).options(VARIANTS["micro"], arguments, tag), str(context),
                   check=False, timeout=1800)
    assert built.returncode != 0 and not image_exists(tag)
    assert "app-command: TRACE_COMMAND passed" in built.stderr  # while traced, it passed
    assert "TRACE_COMMAND fails against the kept files alone" in built.stderr and "HTTP Error 500" in built.stderr


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
