"""The images built here (the project's, the load balancer, and the bench's other variants), and the Builder
that builds them with BuildKit against bases chosen once, printing each command."""

import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import bases, platforms
from .docker import ROOT, build, ca_secret_args, docker, progress

BENCH = ROOT / "bench"  # the tutorial's seed image the bench compares against lives there
# Dockerfiles derived from the committed ones (the naive variant's) and the records of a build; not committed
GENERATED = Path(__file__).resolve().parent / ".generated"
# The repository part of every tag (hello-api:slim, ...). Another name keeps a second checkout's images
# apart from these on a shared engine: HELLO_API_IMAGE=hello-api-dev python -m images build.
IMAGE = os.environ.get("HELLO_API_IMAGE", "hello-api")


def image_tag(variant: str) -> str:
    """The tag a variant is built under: hello-api:slim, :distroless, :micro, :lb..."""
    return f"{IMAGE}:{variant}"


def copy_of(lines: list[str], source: str) -> int:
    """The index of the one `COPY SOURCE DEST` instruction among a Dockerfile's lines."""
    found = [index for index, line in enumerate(lines)
             if line.split()[:1] == ["COPY"] and line.split()[1:-1] == [source]]
    if len(found) != 1:
        raise ValueError(f"the Dockerfile has {len(found)} `COPY {source} ...` instructions, not the one the naive "
                         "variant reorders")
    return found[0]


def comments_above(lines: list[str], index: int) -> int:
    """Where the comment lines directly above line `index` start (`index` when there are none)."""
    while index > 0 and lines[index - 1].startswith("#"):
        index -= 1
    return index


def naive_order(dockerfile: str) -> str:
    """The slim Dockerfile with the code copied before the dependency install: only the layer order differs.
    The dependency layer is the COPY of the lock file, ${APP_LOCK} (its comments go with it); the code's, the
    COPY of service/."""
    lines = dockerfile.splitlines(keepends=True)
    dependencies, code = copy_of(lines, "${APP_LOCK}"), copy_of(lines, "service/")
    if code < dependencies:
        raise ValueError("the Dockerfile already copies service/ before the lock file")
    naive = ["# The naive order: any edit to the code invalidates the pip layer below.\n", "COPY . .\n"]
    return "".join([*lines[:comments_above(lines, dependencies)], *naive, *lines[dependencies + 1:code],
                    *lines[code + 1:]])


@dataclass(frozen=True)
class Variant:
    name: str
    tag: str
    dockerfile: Path
    context: Path
    note: str
    rewrite: Callable[[str], str] | None = None

    def dockerfile_text(self) -> str:
        text = self.dockerfile.read_text()
        return self.rewrite(text) if self.rewrite else text


VARIANTS = {
    "seed": Variant("seed", image_tag("seed"), BENCH / "seed" / "Dockerfile", BENCH / "seed",
                    "the classic Flask tutorial container, flaws kept"),
    "naive": Variant("naive", image_tag("naive"), ROOT / "Dockerfile", ROOT,
                     "slim, but `COPY . .` before the dependency install", naive_order),
    "slim": Variant("slim", image_tag("slim"), ROOT / "Dockerfile", ROOT, "multi-stage, python slim runtime"),
    "distroless": Variant("distroless", image_tag("distroless"), ROOT / "Dockerfile.distroless", ROOT,
                          "multi-stage, distroless python runtime"),
    "micro": Variant("micro", image_tag("micro"), ROOT / "Dockerfile.micro", ROOT,
                     "FROM scratch, only the files a build-time trace saw the service use"),
    "lb": Variant("lb", image_tag("lb"), ROOT / "deploy" / "swarm" / "haproxy" / "Dockerfile",
                  ROOT / "deploy" / "swarm" / "haproxy", "HAProxy from Debian packages, the swarm stack's balancer"),
}
PROJECT_IMAGES = ("slim", "distroless", "micro")  # the API images the project ships
# What `python -m images build` builds: every image compose.yaml and deploy/swarm/stack.yaml name, so both
# run after it.
DEPLOY_IMAGES = (*PROJECT_IMAGES, "lb")

REGISTRY_BASES = ("python:3.13-slim", "gcr.io/distroless/python3-debian13:nonroot")  # the Dockerfiles' defaults


def registry_reachable() -> bool:
    """Pull the official bases; False (with Docker's reason) when no registry answers."""
    for name in REGISTRY_BASES:
        pulled = docker("pull", "-q", name, check=False, timeout=300)
        if pulled.returncode != 0:
            progress(f"cannot pull {name}: {pulled.stderr.strip()[:200]}")
            return False
    return True


class Builder:
    """Builds variants against one choice of bases: the registry's official bases, or the local ones `python -m
    images bases` makes from Debian packages. `Builder.choose(mode)` resolves 'registry', 'local' or 'auto' (the
    registry's when they can be pulled, else local) once, before anything is built."""

    def __init__(self, offline: bool, architecture: str = platforms.native()) -> None:
        self.offline, self.architecture = offline, architecture
        slim = bases.slim_base(architecture)
        # The load balancer's Dockerfile starts from a plain Debian trixie image: the slim base is one.
        self.base_args = [*bases.build_args(architecture), "--build-arg", f"DEBIAN_IMAGE={slim}"] if offline else []
        self.slim_base = slim if offline else REGISTRY_BASES[0]

    @classmethod
    def choose(cls, mode: str = "auto", architecture: str = platforms.native()) -> "Builder":
        """Resolve the bases once: pull the registry's, or make the local ones if they are missing; for
        another architecture than this machine's, check first that QEMU runs its binaries."""
        platforms.require_emulation(architecture)
        offline = not registry_reachable() if mode == "auto" else mode == "local"
        if mode == "auto":
            progress("using " + ("local bases made from Debian packages (python -m images bases)" if offline
                                 else "the registry's official bases"))
        if offline:
            bases.make_bases(architecture=architecture)
        return cls(offline, architecture)

    def tag(self, variant: Variant) -> str:
        """The variant's tag for this builder's architecture (hello-api:micro, or hello-api:micro-arm64)."""
        return platforms.tagged(variant.tag, self.architecture)

    def describe(self) -> str:
        return ("local (made from Debian trixie packages by `python -m images bases`)" if self.offline
                else f"registry ({', '.join(REGISTRY_BASES)})")

    def options(self, variant: Variant, extra: list[str] | None = None, tag: str | None = None) -> list[str]:
        """The build's options: its Dockerfile, tag, bases, labels and the CA secret."""
        return ["--progress=plain", "-f", str(dockerfile_path(variant)), "-t", tag or self.tag(variant),
                *platforms.platform_option(self.architecture), *self.base_args, *revision_args(),
                *ca_secret_args(), *(extra or [])]

    def build(self, variant: Variant, extra: list[str] | None = None, context: Path | None = None,
              tag: str | None = None) -> tuple[float, str]:
        """Build one variant; returns (wall seconds, BuildKit's plain progress output)."""
        started = time.perf_counter()
        result = build(context or variant.context, *self.options(variant, extra, tag))
        return time.perf_counter() - started, result.stderr + result.stdout

    def build_all(self, names: tuple[str, ...] = DEPLOY_IMAGES) -> None:
        for name in names:
            seconds, _ = self.build(VARIANTS[name])
            progress(f"built {self.tag(VARIANTS[name])} in {seconds:.1f}s")


def dockerfile_path(variant: Variant) -> Path:
    """The file to build from: the variant's own, or (for a generated one) a file written for it, so that
    every printed build command can be copied and run again as it is."""
    if variant.rewrite is None:
        return variant.dockerfile
    GENERATED.mkdir(exist_ok=True)
    generated = GENERATED / f"{variant.name}.Dockerfile"
    generated.write_text(variant.dockerfile_text())
    return generated


def git(*args: str) -> str:
    """One git answer about this checkout, '' when git or the repository is missing."""
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def revision_args() -> list[str]:
    """The OCI revision and source labels: HEAD (with -dirty when tracked files differ from it) and the
    origin remote ($HELLO_API_SOURCE first); 'unknown' where git cannot say. Labels only: no layer changes."""
    revision = git("rev-parse", "HEAD") or "unknown"
    if revision != "unknown" and git("status", "--porcelain", "--untracked-files=no"):
        revision += "-dirty"
    source = os.environ.get("HELLO_API_SOURCE") or git("config", "--get", "remote.origin.url") or "unknown"
    return ["--build-arg", f"REVISION={revision}", "--build-arg", f"SOURCE={source}"]
