import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from support import docker, engine_available, free_port, image_exists, image_tag

from images import platforms

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ["slim", "distroless", "micro"]
SHELL_LESS = ["distroless", "micro"]
# The same images built for the other architecture (python -m images build --platform), run under QEMU; their
# tests are marked `emulated` (scripts/matrix.sh leaves them to CI's main run: -m "not emulated").
EMULATED = [f"{variant}-{architecture}" for architecture in platforms.ARCHITECTURES
            if not platforms.is_native(architecture) for variant in IMAGES]


def emulated_params(names: list[str]) -> list:
    """pytest parameters, those of the other architecture's images marked `emulated`."""
    return [pytest.param(name, marks=pytest.mark.emulated) if name in EMULATED else name for name in names]


# On a test: run it on every image of every platform (the `image` fixture with these parameters).
on_every_platform = pytest.mark.parametrize("image", emulated_params([*IMAGES, *EMULATED]), indirect=True)


def in_ci() -> bool:
    """CI systems set CI to true, 1 or yes: under any of them a skipped test is a failed one."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, which counts as a failure: {reason}"


def service_environment(**overrides: str) -> dict[str, str]:
    """The caller's environment without any APP_* variable (a shell's APP_LOG_LEVEL must not leak into a
    test's server), plus `overrides`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("APP_")}, **overrides}


def wait_for_health(url: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=0.5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url}/health did not answer 200 within {seconds}s")


def wait_until(condition, what: str, seconds: float = 15.0) -> None:
    """Wait for evidence (a file, a socket state, a count), not for a clock: fail only if it never comes."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {seconds}s")
        time.sleep(0.01)


def refuses_connections(port: int) -> bool:
    """The port's listening sockets are closed (the drain has begun in every process serving it)."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@dataclass
class Running:
    process: subprocess.Popen
    url: str
    port: int

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, str, str]:
        """Signal the process and collect (exit code, stdout, stderr)."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.finish(timeout)

    def finish(self, timeout: float = 10.0) -> tuple[int, str, str]:
        """Wait for the process to end by itself and collect (exit code, stdout, stderr)."""
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err


@pytest.fixture
def start_service():
    """Start `python -m service` (or another module) on a free port; stopped at teardown whatever happens."""
    started: list[Running] = []

    def start(env: dict[str, str] | None = None, module: str = "service", wait: bool = True,
              command: list[str] | None = None, preexec_fn=None, stdout_file: Path | None = None) -> Running:
        """`stdout_file`: stdout goes there, not to a pipe (which holds 64 KiB unread, then blocks the server)."""
        port = free_port()
        environ = service_environment(**{"APP_PORT": str(port), "APP_HOST": "127.0.0.1",
                                         "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
                                         **(env or {})})
        stdout = subprocess.PIPE if stdout_file is None else stdout_file.open("w")
        process = subprocess.Popen(command or [sys.executable, "-m", module], env=environ, cwd=ROOT,
                                   stdout=stdout, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
        if stdout_file is not None:
            stdout.close()  # the child has its own copy
        running = Running(process, f"http://127.0.0.1:{port}", port)
        started.append(running)
        if wait:
            wait_for_health(running.url)
        return running

    yield start
    for running in started:
        if running.process.poll() is None:
            running.process.kill()
            running.process.communicate(timeout=10)


# ---- containers (the tests marked docker) ------------------------------------------------------------

def unavailable(reason: str) -> None:
    if in_ci():
        pytest.fail(f"{reason} (under CI, container tests must run, not skip)")
    pytest.skip(reason)


def require_image(variant: str) -> str:
    """The variant's name (slim, or slim-arm64 for another platform's), once its image is known to be built
    and, for another platform, to run here; else skip (fail under CI=true)."""
    tag = image_tag(variant)
    architecture = variant.rpartition("-")[2] if variant in EMULATED else platforms.native()
    if not image_exists(tag):
        unavailable(f"{tag} is not built: run python -m images build --platform linux/{architecture} (or --offline)")
    try:
        platforms.require_emulation(architecture)
    except platforms.NoEmulation as missing:
        unavailable(str(missing))
    return variant


@pytest.fixture(scope="session")
def engine() -> None:
    if not engine_available():
        unavailable("no Docker engine answers: start dockerd, or set DOCKER to a working client")


@pytest.fixture(params=IMAGES)
def image(request, engine) -> str:
    return require_image(request.param)


@pytest.fixture
def run_container():
    """`docker run -d` with a unique name and a free host port mapped to the container port."""
    names = []

    def run(variant: str, *args: str, env: dict[str, str] | None = None, container_port: int = 5000,
            wait: bool = True) -> tuple[str, str]:
        name, port = f"hello-api-test-{uuid.uuid4().hex[:10]}", free_port()
        options = [f"-e{key}={value}" for key, value in (env or {}).items()]
        docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:{container_port}", *options, *args,
               image_tag(variant))
        names.append(name)
        url = f"http://127.0.0.1:{port}"
        if wait:
            wait_for_health(url, seconds=30)
        return name, url

    yield run
    for name in names:
        docker("rm", "-f", name, check=False)


def inspect(name: str, template: str) -> str:
    return docker("inspect", "--format", template, name, quiet=True).stdout.strip()
