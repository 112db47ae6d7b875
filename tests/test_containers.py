"""Both images, walked through the tutorial's checkpoints with the real Docker CLI.

Needs a Docker engine and the images (`python -m images build`, or `--offline`). On a laptop without
them these tests skip; under CI=true a missing engine or image is a failure.
"""

import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests
from conftest import IMAGES, ROOT, SHELL_LESS, inspect, on_every_platform, require_image, wait_until
from raw_http import connect, read_until_closed, request
from support import build, build_variant, docker, image_tag

pytestmark = pytest.mark.docker


def address_of(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


@on_every_platform
def test_serves_the_endpoints_with_app_env_from_docker_run(image, run_container):
    _name, url = run_container(image, env={"APP_ENV": "production"})
    assert requests.get(f"{url}/health", timeout=5).json() == {"status": "healthy", "environment": "production"}
    assert requests.get(f"{url}/hello/Docker", timeout=5).json() == {
        "message": "Hello, Docker!", "environment": "production"}


def test_docker_logs_show_the_startup_line_and_each_request(image, run_container):
    name, url = run_container(image, env={"APP_ENV": "production"})
    requests.get(f"{url}/hello/logs", timeout=5)
    logs = docker("logs", name)
    assert "serving environment=production" in logs.stderr
    assert "GET /hello/logs 200" in logs.stdout


def test_app_port_moves_the_server_inside_the_container(image, run_container):
    _name, url = run_container(image, env={"APP_PORT": "8000"}, container_port=8000)
    assert requests.get(f"{url}/health", timeout=5).status_code == 200


def wait_until_healthy(name: str) -> str:
    deadline = time.monotonic() + 45
    while (status := inspect(name, "{{.State.Health.Status}}")) != "healthy" and time.monotonic() < deadline:
        time.sleep(0.5)
    return status


@on_every_platform
def test_the_healthcheck_reaches_healthy(image, run_container):
    name, _ = run_container(image)
    assert wait_until_healthy(name) == "healthy"


@on_every_platform
def test_docker_stop_closes_an_idle_keep_alive_connection_and_exits_0_well_before_the_kill(image, run_container):
    name, url = run_container(image)
    with connect(address_of(url)) as idle:
        idle.sendall(request("/health"))
        raw, closed, _ = read_until_closed(idle, 0.5)
        assert raw.startswith(b"HTTP/1.1 200") and not closed  # kept alive, idle
        started = time.monotonic()
        docker("stop", "--time", "10", name)
        elapsed = time.monotonic() - started
        _, closed, _ = read_until_closed(idle, 2)
    assert closed
    assert inspect(name, "{{.State.ExitCode}}") == "0"  # 137 would mean Docker had to SIGKILL it
    assert elapsed < 5, f"docker stop took {elapsed:.1f}s"
    assert "Stopped cleanly" in docker("logs", name).stderr


@on_every_platform
def test_every_answer_says_json_nosniff_and_no_store(image, run_container):
    _name, url = run_container(image)
    for target in ("/health", "/hello/x", "/nope"):
        answer = requests.get(f"{url}{target}", timeout=5)
        assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.headers["Cache-Control"] == "no-store"


def test_the_image_passes_arguments_to_the_service(image, engine):
    result = docker("run", "--rm", image_tag(image), "--help", timeout=60)
    assert "usage: python -m service" in result.stdout
    assert "APP_PORT" in result.stdout
    version = docker("run", "--rm", image_tag(image), "--version", timeout=60)
    assert version.stdout == "hello-api 1.0.0\n"


def test_the_images_own_healthcheck_stays_out_of_the_access_log_but_requests_from_outside_do_not(
        image, run_container):
    name, url = run_container(image)
    wait_until_healthy(name)
    requests.get(f"{url}/health?from=outside", headers={"User-Agent": "hello-api-healthcheck"}, timeout=5)
    # The line is written after the answer is sent, and reaches `docker logs` later still: wait for it.
    wait_until(lambda: " /health?from=outside 200 " in docker("logs", name, quiet=True).stdout,
               "the outside request's access line")
    logged = docker("logs", name).stdout.splitlines()
    assert not [line for line in logged if " /health 200 " in line and "outside" not in line
                and line.split()[1] in ("127.0.0.1", "::1")]


@on_every_platform
def test_runs_as_the_non_root_user_65532(image, run_container):
    name, _ = run_container(image)
    assert inspect(name, "{{.Config.User}}") == "65532:65532"
    uid = docker("exec", name, "python3", "-c", "import os; print(os.getuid(), os.getgid())").stdout.split()
    assert uid == ["65532", "65532"]


def test_serves_with_a_read_only_root_and_no_capabilities(image, run_container):
    _name, url = run_container(image, "--read-only", "--cap-drop", "ALL",
                              "--security-opt", "no-new-privileges")
    assert requests.get(f"{url}/hello/locked", timeout=5).status_code == 200


@pytest.mark.parametrize("variant", SHELL_LESS)
def test_a_shell_less_image_has_no_shell_package_manager_or_pip(engine, run_container, variant):
    require_image(variant)
    name, _ = run_container(variant)
    assert docker("exec", name, "/bin/sh", "-c", "true", check=False).returncode != 0
    # os, not shutil: micro keeps only the modules the service imports.
    probe = ("import os, importlib.util; print([p for p in ('/bin/sh', '/bin/bash', '/usr/bin/apt', "
             "'/usr/bin/dpkg', '/var/lib/dpkg/status') if os.path.exists(p)], [os.path.join(d, n) for d in "
             "os.environ['PATH'].split(':') for n in ('sh', 'pip', 'pip3') if os.path.exists(os.path.join(d, n))], "
             "importlib.util.find_spec('pip'))")
    assert docker("exec", name, "python3", "-c", probe).stdout.strip() == "[] [] None"


BYTECODE_PROBE = """
import sys, os, service.server, service.healthcheck
missing = [name for name, module in list(sys.modules.items())
           if getattr(module, '__cached__', None) and not os.path.exists(module.__cached__)]
print(len([m for m in sys.modules.values() if getattr(m, '__cached__', None)]), missing)
"""


def test_every_module_the_service_loads_has_bytecode_compiled_at_build_time(image, engine):
    result = docker("run", "--rm", "--read-only", "--entrypoint", "python3", image_tag(image), "-c",
                    BYTECODE_PROBE, timeout=60)
    loaded, missing = result.stdout.split(" ", 1)
    assert int(loaded) > 50
    assert missing.strip() == "[]"


def test_the_dependencies_are_only_the_hash_pinned_waitress(image, engine):
    pinned = re.search(r"^waitress==(\S+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE)[1]
    probe = ("import os; print(sorted(os.listdir('/app/deps')), "
             "sorted(os.listdir('/app/deps/bin')) if os.path.isdir('/app/deps/bin') else '-')")
    listing = docker("run", "--rm", "--entrypoint", "python3", image_tag(image), "-c", probe, timeout=60)
    if image == "micro":  # it keeps what the service loads and the package's metadata, not the console script
        assert listing.stdout.strip() == f"['waitress', 'waitress-{pinned}.dist-info'] -"
    else:
        assert listing.stdout.strip() == f"['bin', 'waitress', 'waitress-{pinned}.dist-info'] ['waitress-serve']"


def test_the_build_context_holds_only_the_service_the_lock_the_build_tools_and_the_worked_example(engine):
    require_image("slim")
    listing = (f'FROM {image_tag("slim")}\nCOPY . /context\nWORKDIR /context\n'
               'ENTRYPOINT ["find", ".", "-type", "f"]\n')
    tag = f"hello-api-context-probe:{uuid.uuid4().hex[:8]}"
    build(ROOT, "-q", "-t", tag, "-f", "-", input=listing.encode())
    try:
        files = [f.removeprefix("./") for f in docker("run", "--rm", tag).stdout.split()]
    finally:
        docker("rmi", "-f", tag, check=False)
    assert "requirements.lock" in files
    assert "service/app.py" in files
    tracer = ["images/micro/record.py", "images/micro/trace.py"]  # Dockerfile.micro's trace stage
    writers = ["images/sbom.py", "images/bytecode.py"]  # the sbom and bytecode stages
    example = ("examples/flask-tutorial/requirements.lock", "examples/flask-tutorial/tutorial/",
               "examples/flask-tutorial/tests/")  # README, "Your own app": a few KB
    assert not [f for f in files if f not in ("requirements.lock", *tracer, *writers)
                and not f.startswith(("service/", *example))]
    assert not [f for f in files if "__pycache__" in f]


def cached_steps(output: str) -> dict[str, bool]:
    """BuildKit plain progress → {step title: came from cache}."""
    titles, cached = {}, set()
    for line in output.splitlines():
        number, _, rest = line.partition(" ")
        if number.startswith("#") and rest.startswith("["):
            titles.setdefault(number, rest)
        elif number.startswith("#") and rest == "CACHED":
            cached.add(number)
    return {title: number in cached for number, title in titles.items()}


@pytest.mark.parametrize("variant", IMAGES)
def test_a_code_only_edit_rebuilds_without_rerunning_pip(engine, variant):
    with tempfile.TemporaryDirectory(prefix="hello-api-context-") as work:
        context = Path(work)
        for name in ("service", "requirements.lock", ".dockerignore", "images/micro", "images/sbom.py",
                     "images/bytecode.py"):
            source = ROOT / name
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, context / name)
        probe = f"hello-api-cache-probe:{uuid.uuid4().hex[:8]}"
        try:
            build_variant(variant, context, tag=probe)
            with (context / "service" / "app.py").open("a") as app:
                app.write(f"\n# edited by the cache test {uuid.uuid4()}\n")
            output = build_variant(variant, context, tag=probe)
        finally:
            docker("rmi", "-f", probe, check=False)
    steps = cached_steps(output)
    pip = [cached for title, cached in steps.items() if "pip install" in title]
    code = [cached for title, cached in steps.items() if "COPY service/ service/" in title]
    assert pip == [True], steps
    assert code == [False], steps
