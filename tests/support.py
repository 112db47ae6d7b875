"""What the tests of the service and of its images need from around them, without the bench: the Docker CLI,
the images' names, a build, an image's exported file system and a free port (all from images/, which builds
the images), /proc's children and the open-file limit.
"""

import resource
from pathlib import Path

from images import bases
from images.docker import (
    DOCKER_FILES,
    ROOT,
    DockerError,
    build,
    docker,
    engine_available,
    exported,
    free_port,
    image_exists,
    inspect_image,
)
from images.variants import IMAGE, VARIANTS, Builder, image_tag

__all__ = ["DOCKER_FILES", "IMAGE", "ROOT", "DockerError", "allow_open_files", "build", "build_variant", "child_pids",
           "docker", "engine_available", "exported", "free_port", "image_exists", "image_tag", "inspect_image"]


def build_variant(variant: str, context: Path = ROOT, tag: str | None = None, extra: tuple[str, ...] = ()) -> str:
    """A project image built from `context` as `python -m images build` builds it, on the local
    bases when both exist (else the Dockerfile's registry defaults); returns BuildKit's plain progress output."""
    local = all(image_exists(base) for base in (bases.SLIM_BASE, bases.DISTROLESS_BASE))
    _, output = Builder(offline=local).build(VARIANTS[variant], list(extra), context, tag)
    return output


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
