"""What the tests of the service and of its images need from around them, without the bench: the Docker CLI,
the images' names, a build, an image's exported file system, a free port, /proc's children and the
open-file limit. The bench has helpers of its own for the same jobs: the two are separate products, and
these tests must keep working whatever the bench becomes.
"""

import json
import os
import resource
import shlex
import socket
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The repository part of every tag, as `python -m bench images` names them (hello-api:slim, ...): another
# name keeps a checkout's images apart on a shared engine, HELLO_API_IMAGE=hello-api-dev.
IMAGE = os.environ.get("HELLO_API_IMAGE", "hello-api")
DOCKERFILES = {"slim": ROOT / "Dockerfile", "distroless": ROOT / "Dockerfile.distroless",
               "micro": ROOT / "Dockerfile.micro"}
# The bases `python -m bench bases` makes from Debian packages, for building without a registry (the bench's
# own tests check these names against it: tests/test_bench.py).
LOCAL_BASES = {"PYTHON_IMAGE": "hello-api-base/python:3.13-slim-trixie",
               "DISTROLESS_IMAGE": "hello-api-base/distroless-python3:debian13-nonroot-2"}
CA_BUNDLE_VARIABLE = "PIP_CA_BUNDLE"  # a PEM file pip must trust inside builds (TLS-intercepting proxies)
# Files Docker itself puts in every container (mount points for its own files), never part of an image.
DOCKER_FILES = frozenset({".dockerenv", "dev/console", "etc/hostname", "etc/hosts", "etc/resolv.conf"})


def image_tag(variant: str) -> str:
    """The tag `python -m bench images` gives a variant: slim, distroless, micro or lb."""
    return f"{IMAGE}:{variant}"


class DockerError(RuntimeError):
    """A Docker command failed; the message holds the command and Docker's stderr."""


def docker(*args: str, check: bool = True, timeout: float = 600, quiet: bool = False,
           input: bytes | None = None) -> subprocess.CompletedProcess:
    """Run `$DOCKER args…` (DOCKER may hold a command and its options), capturing text output; raises with
    Docker's own words when it fails. The command is printed to stderr unless `quiet`."""
    command = [*shlex.split(os.environ.get("DOCKER", "docker")), *args]
    if not quiet:
        print("$ " + shlex.join(command), file=sys.stderr, flush=True)
    result = subprocess.run(command, capture_output=True, timeout=timeout, input=input,
                            env={**os.environ, "DOCKER_BUILDKIT": "1"})
    result.stdout = result.stdout.decode(errors="replace")
    result.stderr = result.stderr.decode(errors="replace")
    if check and result.returncode != 0:
        raise DockerError(f"{shlex.join(command)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    return result


def engine_available() -> bool:
    try:
        return docker("version", "--format", "{{.Server.Version}}", check=False, quiet=True,
                      timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def image_exists(name: str) -> bool:
    return docker("image", "inspect", name, check=False, quiet=True).returncode == 0


def inspect_image(image: str, template: str) -> object:
    """One field of `docker image inspect`, as JSON (`template` names it: .RootFS.Layers, .Config.Labels)."""
    return json.loads(docker("image", "inspect", "-f", f"{{{{json {template}}}}}", image, quiet=True).stdout)


def build(variant: str, context: Path = ROOT, tag: str | None = None, extra: tuple[str, ...] = ()) -> str:
    """`docker build` of a project image from `context`, on the local bases when both exist (else the
    Dockerfile's registry defaults), trusting $PIP_CA_BUNDLE inside when set; returns BuildKit's plain
    progress output."""
    base_args = [arg for name, base in LOCAL_BASES.items() for arg in ("--build-arg", f"{name}={base}")]
    if not all(image_exists(base) for base in LOCAL_BASES.values()):
        base_args = []
    bundle = os.environ.get(CA_BUNDLE_VARIABLE)
    secret = ["--secret", f"id=pip_ca,src={bundle}"] if bundle else []
    result = docker("build", "--progress=plain", "-f", str(DOCKERFILES[variant]), "-t", tag or image_tag(variant),
                    *base_args, *secret, *extra, str(context), timeout=1800)
    return result.stderr + result.stdout


@contextmanager
def exported(tag: str) -> Iterator[tarfile.TarFile]:
    """The image's file system as a streamed tar (`docker export` of a created, never started container)."""
    name = f"hello-api-test-export-{uuid.uuid4().hex[:8]}"
    docker("create", "--name", name, tag, quiet=True)
    try:
        command = [*shlex.split(os.environ.get("DOCKER", "docker")), "export", name]
        with subprocess.Popen(command, stdout=subprocess.PIPE) as export, \
                tarfile.open(fileobj=export.stdout, mode="r|") as tar:
            yield tar
    finally:
        docker("rm", "-f", name, check=False, quiet=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_pids(parent: int) -> list[int]:
    """Live child processes of `parent`, from /proc (no psutil)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and fields[0] != "Z":
                found.append(int(entry.name))
    return sorted(found)


def allow_open_files(wanted: int) -> None:
    """Raise this process's soft open-file limit to `wanted` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
