"""The Docker CLI, as images/, the bench and the tests use it: honours $DOCKER, prints what it runs; the one
way to build, the engine's endpoint, image store and API (through the client's own connection), an image's
exported file system and a free host port to publish a container on."""

import functools
import http.client
import json
import os
import shlex
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CA_BUNDLE_VARIABLE = "PIP_CA_BUNDLE"  # a PEM file pip must trust inside builds (TLS-intercepting proxies)
# Files Docker itself puts in every container (mount points for its own files), never part of an image.
DOCKER_FILES = frozenset({".dockerenv", "dev/console", "etc/hostname", "etc/hosts", "etc/resolv.conf"})


def docker_command() -> list[str]:
    return shlex.split(os.environ.get("DOCKER", "docker"))


def program() -> str:
    """The package run with `python -m` (bench, images), to say whose progress a line is; else images."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.parent if spec is not None and spec.parent else "images"


def progress(message: str) -> None:
    print(f"[{program()} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def docker(*args: str, check: bool = True, timeout: float = 600, quiet: bool = False,
           input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run `$DOCKER args…`, capturing text output; raises with Docker's own words when it fails."""
    command = [*docker_command(), *args]
    if not quiet:
        progress("$ " + shlex.join(command))
    result = subprocess.run(command, capture_output=True, timeout=timeout, input=input,
                            env={**os.environ, "DOCKER_BUILDKIT": "1"})
    result.stdout = result.stdout.decode(errors="replace")
    result.stderr = result.stderr.decode(errors="replace")
    if check and result.returncode != 0:
        raise DockerError(f"{shlex.join(command)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result


class DockerError(RuntimeError):
    """A Docker command failed; the message holds the command and Docker's stderr."""


def build(context: Path | str, *options: str, input: bytes | None = None,
          timeout: float = 1800) -> subprocess.CompletedProcess:
    """Build with BuildKit into the engine's images, the one way every image here is built: `docker buildx
    build --load` where the client has the buildx plugin (every client since 23.0 builds through it; `--load`
    puts the image among the engine's whichever builder is selected), else a 20.10 client's `docker build`,
    whose BuildKit is built in (DOCKER_BUILDKIT=1)."""
    return docker(*build_command(), *options, str(context), input=input, timeout=timeout)


@functools.cache
def build_command() -> tuple[str, ...]:
    has_buildx = docker("buildx", "version", check=False, quiet=True, timeout=30).returncode == 0
    return ("buildx", "build", "--load") if has_buildx else ("build",)


def engine_available() -> bool:
    try:
        return docker("version", "--format", "{{.Server.Version}}", check=False, quiet=True,
                      timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def image_store() -> str:
    """Where the engine keeps images: 'overlay2' (or another graph driver), or 'containerd (overlayfs
    snapshotter)' on the containerd image store, whose `docker image inspect .Size` means something else."""
    info = json.loads(docker("info", "--format", "{{json .}}", quiet=True).stdout)
    driver = info.get("Driver", "unknown")
    if ["driver-type", "io.containerd.snapshotter.v1"] in (info.get("DriverStatus") or []):
        return f"containerd ({driver} snapshotter)"
    return driver


@functools.cache
def engine_architecture() -> str:
    """The architecture of the machine the engine runs on (amd64, arm64): what its containers run natively."""
    return docker("version", "--format", "{{.Server.Arch}}", quiet=True, timeout=30).stdout.strip()


def engine_endpoint() -> str:
    """Where the client reaches the engine, as the client itself resolves -H, DOCKER_HOST and the current
    context: unix:///var/run/docker.sock, npipe://..., tcp://HOST:PORT or ssh://USER@HOST."""
    return docker("context", "inspect", "--format", "{{.Endpoints.docker.Host}}", quiet=True,
                  timeout=30).stdout.strip()


def engine_get(path: str, timeout: float = 30) -> dict:
    """GET `path` on the Engine API (`/containers/NAME/stats?...`), through the client's own connection
    (`docker system dial-stdio`), so a local socket, Docker Desktop's VM and a remote tcp:// or ssh:// engine
    answer alike; the JSON it answers. DockerError with the engine's message when it answers no 200."""
    command = [*docker_command(), "system", "dial-stdio"]
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as dial:
        watchdog = threading.Timer(timeout, dial.kill)
        watchdog.start()
        try:
            dial.stdin.write(f"GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".encode())
            dial.stdin.flush()  # stdin stays open until the answer is read: the engine drops a half-closed client
            response = http.client.HTTPResponse(_Connection(dial.stdout))
            response.begin()
            body = response.read()
        except (OSError, http.client.HTTPException) as broken:
            dial.kill()
            said = dial.stderr.read().decode(errors="replace").strip()[-500:]
            raise DockerError(f"{shlex.join(command)}: GET {path} got no answer ({broken!r}): {said}") from None
        finally:
            watchdog.cancel()
            dial.stdin.close()
    if response.status != 200:
        message = body.decode(errors="replace").strip()
        raise DockerError(f"the engine answered GET {path} with {response.status}: {message[-500:]}")
    return json.loads(body)


class _Connection:
    """The pipe from `docker system dial-stdio`, as the socket http.client reads a response from."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def makefile(self, mode: str):
        return self.stream


def image_exists(name: str) -> bool:
    return docker("image", "inspect", name, check=False, quiet=True).returncode == 0


def inspect_image(image: str, template: str) -> object:
    """One field of `docker image inspect`, as JSON (`template` names it: .RootFS.Layers, .Config.Labels)."""
    return json.loads(docker("image", "inspect", "-f", f"{{{{json {template}}}}}", image, quiet=True).stdout)


@contextmanager
def exported(tag: str) -> Iterator[tarfile.TarFile]:
    """The image's file system as a streamed tar (`docker export` of a created, never started container)."""
    name = f"hello-api-export-{uuid.uuid4().hex[:8]}"
    docker("create", "--name", name, tag, quiet=True)
    try:
        command = [*docker_command(), "export", name]
        progress("$ " + " ".join(command) + " | tar t")
        with subprocess.Popen(command, stdout=subprocess.PIPE) as export, \
                tarfile.open(fileobj=export.stdout, mode="r|") as tar:
            yield tar
    finally:
        docker("rm", "-f", name, check=False, quiet=True)


def free_port() -> int:
    """A free loopback port (to publish a container on, or to serve on)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ca_secret_args() -> list[str]:
    """`--secret` for a CA bundle when $PIP_CA_BUNDLE names one; builds work without it too."""
    bundle = os.environ.get(CA_BUNDLE_VARIABLE)
    if not bundle:
        return []
    if not Path(bundle).is_file():
        raise SystemExit(f"{CA_BUNDLE_VARIABLE}={bundle!r} is not a file: point it at a PEM CA bundle "
                         "or unset it.")
    return ["--secret", f"id=pip_ca,src={bundle}"]
