"""`python -m bench compare`: the image study for any images, side by side.

    python -m bench compare myapp:slim small=myapp:distroless --url /hello --baseline small
    python -m bench compare --build fat=Dockerfile --build thin=Dockerfile.small@. --ready /

Each image is `IMAGE` or `LABEL=IMAGE`; `--build LABEL=DOCKERFILE[@CONTEXT]` builds one first (context: the
Dockerfile's folder) and measures its build cache too. Every image gets the study's figures: size, start-up
to the first 2xx on --ready against a noop container, `docker stop` and its exit code, idle and loaded
memory (read on the host, so images without a shell or Python are measured too), throughput and p99 on
--url in a closed loop, and latency at fixed rates (25/50/75% of the baseline's throughput) in an open
loop. Ratios are to --baseline (default: the first image). What could not be measured for an image is
said on stderr and in the report, and the other images are still measured.

A code edit, for an image built with --build, appends a comment line to the first `*.py` file of its
context by path (shallowest first, then by name; hidden folders, virtual environments and tests left
out); a dependency edit, to the first of requirements.lock, requirements.txt, poetry.lock, uv.lock,
pyproject.toml found at the top of the context. The report names the files edited.
"""

import argparse
import re
from pathlib import Path

from images.variants import IMAGE, Builder, Variant

from .. import image_report, results
from ..containers import CONTAINER_PORT, READY_SECONDS
from ..image_measures import Plan, Run, Subject, plan_with_runs
from ..load import require_wrk

DEPENDENCY_FILES = ("requirements.lock", "requirements.txt", "poetry.lock", "uv.lock", "pyproject.toml")
SKIPPED_FOLDERS = {".venv", "venv", "env", "node_modules", "tests", "test", "__pycache__", "site-packages"}
PLANS = {"quick": Plan(True, startup_runs=5, stop_runs=1, load_seconds=3, load_runs=2, control_rounds=0,
                       control_seconds=0, open_loop_seconds=3),
         "full": Plan(False, startup_runs=15, stop_runs=3, load_seconds=10, load_runs=3, control_rounds=0,
                      control_seconds=0, open_loop_seconds=10)}
LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class CompareError(ValueError):
    """A command line `compare` cannot run: the message says what was wrong and what to do."""


def parse_image(text: str) -> tuple[str, str]:
    """`IMAGE` (labelled by itself) or `LABEL=IMAGE`."""
    label, equals, image = text.partition("=")
    if not equals:
        return text, text
    if not LABEL.fullmatch(label) or not image:
        raise CompareError(f"{text!r}: write IMAGE or LABEL=IMAGE, LABEL of letters, digits, '.', '_', '-'")
    return label, image


def parse_build(text: str) -> tuple[str, Path, Path]:
    """`LABEL=DOCKERFILE[@CONTEXT]`: the label, the Dockerfile and the context (default: its folder)."""
    label, equals, rest = text.partition("=")
    if not equals or not LABEL.fullmatch(label) or not rest:
        raise CompareError(f"--build {text!r}: write LABEL=DOCKERFILE or LABEL=DOCKERFILE@CONTEXT")
    dockerfile_text, at, context_text = rest.partition("@")
    dockerfile = Path(dockerfile_text).resolve()
    context = Path(context_text).resolve() if at else dockerfile.parent
    if not dockerfile.is_file():
        raise CompareError(f"--build {text!r}: {dockerfile_text} is not a file: name the Dockerfile to build")
    if not context.is_dir():
        raise CompareError(f"--build {text!r}: the context {context_text} is not a folder")
    return label, dockerfile, context


def parse_env(text: str) -> str:
    key, equals, _ = text.partition("=")
    if not equals or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        raise CompareError(f"--env {text!r}: write KEY=VALUE, KEY a variable name")
    return text


def code_file(context: Path) -> str | None:
    """The first `*.py` of a context by path, shallowest first, then by name, outside hidden folders,
    virtual environments and tests."""
    candidates = [path.relative_to(context) for path in context.rglob("*.py")
                  if not any(part.startswith(".") or part in SKIPPED_FOLDERS
                             for part in path.relative_to(context).parts[:-1])]
    return str(min(candidates, key=lambda p: (len(p.parts), str(p)))) if candidates else None


def dependency_file(context: Path) -> str | None:
    return next((name for name in DEPENDENCY_FILES if (context / name).is_file()), None)


def build_subject(label: str, dockerfile: Path, context: Path, request: dict, env: tuple[str, ...]) -> Subject:
    tag = f"{IMAGE}-compare:{label.lower()}"
    variant = Variant(label, tag, dockerfile, context, f"built from {dockerfile.name} (context {context.name}/)")
    return Subject(label, tag, variant.note, variant, (dependency_file(context), code_file(context)), env=env,
                  **request)


def subjects_from(options: argparse.Namespace) -> tuple[list[Subject], str]:
    """The subjects in order, the baseline first, and the baseline's label."""
    if options.ready_seconds <= 0:
        raise CompareError(f"--ready-seconds {options.ready_seconds:g}: give a positive number of seconds")
    request = {"port": options.port, "ready": options.ready, "url": options.url,
               "ready_seconds": options.ready_seconds}
    env = tuple(parse_env(pair) for pair in options.env)
    chosen = [Subject(label, image, "", env=env, **request) for label, image in map(parse_image, options.images)]
    chosen += [build_subject(*parse_build(entry), request, env) for entry in options.build]
    if not chosen:
        raise CompareError("name at least one image (IMAGE or LABEL=IMAGE) or --build LABEL=DOCKERFILE")
    labels = [subject.label for subject in chosen]
    if duplicates := sorted({label for label in labels if labels.count(label) > 1}):
        raise CompareError(f"the label(s) {', '.join(duplicates)} name more than one image: give each its own "
                           "with LABEL=IMAGE")
    base = options.baseline or labels[0]
    if base not in labels:
        raise CompareError(f"--baseline {base!r} is not one of the images' labels: {', '.join(labels)}")
    return sorted(chosen, key=lambda subject: subject.label != base), base


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", metavar="[LABEL=]IMAGE", help="images to measure, as they are")
    parser.add_argument("--build", action="append", default=[], metavar="LABEL=DOCKERFILE[@CONTEXT]",
                        help="build an image first (context: the Dockerfile's folder) and measure its build cache")
    parser.add_argument("--port", type=int, default=CONTAINER_PORT, help="the port the images listen on "
                                                                          f"(default {CONTAINER_PORT})")
    parser.add_argument("--ready", default="/health", help="the path whose first 2xx means started "
                                                           "(default /health)")
    parser.add_argument("--ready-seconds", type=float, default=READY_SECONDS,
                        help=f"how long an image may take to answer --ready (default {READY_SECONDS:g})")
    parser.add_argument("--url", default="/", help="the path loaded for throughput and latency (default /)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for every container (repeatable)")
    parser.add_argument("--baseline", help="the label ratios are to (default: the first image)")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs (a few minutes)")
    parser.add_argument("--runs", type=int, help="start-up rounds (default 15, quick 5)")
    parser.add_argument("--label", default="compare", help="title of the report")


def run(options: argparse.Namespace) -> dict:
    try:
        subjects, base = subjects_from(options)
    except CompareError as wrong:
        raise SystemExit(f"bench compare: error: {wrong}") from None
    require_wrk("image")
    builder: Builder = options.builder
    plan = plan_with_runs(options.plan, options.runs)
    study = Run(subjects, plan, ["--entrypoint", "python3", builder.slim_base, "-c", "import time; time.sleep(120)"],
                builder)
    found = {"label": options.label, "compare": True, "baseline": base,
             **results.header("quick" if plan.quick else "full", options.command_line, plan, builder.describe()),
             "request": {"port": options.port, "ready": options.ready, "url": options.url,
                         "ready_seconds": options.ready_seconds, "env": list(subjects[0].env)},
             **study.measure()}
    found["noise"] = study.quietness.summary()
    return results.finish(found)


STUDY = results.Study(
    name="compare", summary="the image study for any images: python -m bench compare IMAGE [LABEL=IMAGE ...]",
    files=("results.json", "report.md", "chart.svg"), add_options=add_options, run=run,
    render=image_report.render, evaluate=image_report.evaluate, guarantees=image_report.guarantees,
    gaps=image_report.gaps, upgrades=image_report.UPGRADES,
    shape=image_report.shape, plans=PLANS, builds=True, description=__doc__)
