"""The Docker CLI, as the bench and the tests use it: honours $DOCKER, prints what it runs."""

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CA_BUNDLE_VARIABLE = "PIP_CA_BUNDLE"  # a PEM file pip must trust inside builds (TLS-intercepting proxies)


def docker_command() -> list[str]:
    return shlex.split(os.environ.get("DOCKER", "docker"))


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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


def engine_available() -> bool:
    try:
        return docker("version", "--format", "{{.Server.Version}}", check=False, quiet=True,
                      timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def image_exists(name: str) -> bool:
    return docker("image", "inspect", name, check=False, quiet=True).returncode == 0


def ca_secret_args() -> list[str]:
    """`--secret` for a CA bundle when $PIP_CA_BUNDLE names one; builds work without it too."""
    bundle = os.environ.get(CA_BUNDLE_VARIABLE)
    if not bundle:
        return []
    if not Path(bundle).is_file():
        raise SystemExit(f"{CA_BUNDLE_VARIABLE}={bundle!r} is not a file: point it at a PEM CA bundle "
                         "or unset it.")
    return ["--secret", f"id=pip_ca,src={bundle}"]
