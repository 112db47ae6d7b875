"""The three Dockerfiles, generated from images/templates/ as docker-library generates its variants: each
variant's template, with the build stage they share (build.template) where `%%BUILD_STAGE%%` stands. The
generated files are committed; `python -m images dockerfiles` writes them again after a template changes,
and a test fails while they are not current."""

from pathlib import Path

from .variants import PROJECT_IMAGES, VARIANTS

TEMPLATES = Path(__file__).resolve().parent / "templates"
BUILD_STAGE = "%%BUILD_STAGE%%\n"
REGENERATE = "python -m images dockerfiles"


def notice(variant: str) -> str:
    """The first line of a generated Dockerfile: where to edit it, and how to make it again."""
    return f"# Generated from images/templates/ ({variant}.template, build.template) by `{REGENERATE}`.\n"


def render(variant: str) -> str:
    """The Dockerfile of a project variant (slim, distroless, micro), as the templates make it."""
    template = (TEMPLATES / f"{variant}.template").read_text()
    if template.count(BUILD_STAGE) != 1:
        raise ValueError(f"images/templates/{variant}.template must hold {BUILD_STAGE.strip()} on a line once")
    return notice(variant) + template.replace(BUILD_STAGE, (TEMPLATES / "build.template").read_text())


def dockerfiles() -> dict[Path, str]:
    """Every generated Dockerfile's path and the text the templates give it."""
    return {VARIANTS[variant].dockerfile: render(variant) for variant in PROJECT_IMAGES}


def stale() -> list[Path]:
    """The committed Dockerfiles that differ from what the templates make."""
    return [path for path, text in dockerfiles().items() if not path.is_file() or path.read_text() != text]


def write() -> list[Path]:
    """Write the Dockerfiles that are not current; returns those written."""
    written = stale()
    texts = dockerfiles()
    for path in written:
        path.write_text(texts[path])
    return written
