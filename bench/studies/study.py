"""`python -m bench study` (the default): the image study of the project's own variants, a fixed list on
the machinery `bench compare` uses for any images, plus what only this project's images have: the
start-up phases their logs allow, the control (the service against plain waitress) and the targets."""

import argparse

from images.variants import VARIANTS, Builder

from .. import control, image_report, results
from ..image_measures import Plan, Run, Subject, plan_with_runs, startup_phases_study
from ..load import require_wrk

PLANS = {"quick": Plan(True, startup_runs=5, stop_runs=1, load_seconds=3, load_runs=2, control_rounds=3,
                       control_seconds=2, open_loop_seconds=0),
         "full": Plan(False, startup_runs=15, stop_runs=3, load_seconds=10, load_runs=3, control_rounds=5,
                      control_seconds=5, open_loop_seconds=0)}
ORDER = ("seed", "naive", "slim", "distroless", "micro")
PHASED = ("slim", "distroless", "micro")  # the images whose service logs the moment it listens
EDITED_FILES = {  # variant -> (dependency file, code file), relative to its build context
    "seed": ("requirements.txt", "app.py"),
    "naive": ("requirements.lock", "service/app.py"),
    "slim": ("requirements.lock", "service/app.py"),
    "distroless": ("requirements.lock", "service/app.py"),
    "micro": ("requirements.lock", "service/app.py"),
}


def project_subjects() -> list[Subject]:
    return [Subject(name, VARIANTS[name].tag, VARIANTS[name].note, VARIANTS[name], EDITED_FILES[name])
            for name in ORDER]


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs (a few minutes; for CI)")
    parser.add_argument("--runs", type=int, help="start-up rounds (default 15, quick 5)")
    parser.add_argument("--label", default="hello-api variants", help="title of the report")


def run(options: argparse.Namespace) -> dict:
    require_wrk("image")
    builder: Builder = options.builder
    plan = plan_with_runs(options.plan, options.runs)
    study = Run(project_subjects(), plan, ["--entrypoint", "python3", VARIANTS["distroless"].tag, "-c",
                                         "import time; time.sleep(120)"], builder)
    found = {"label": options.label, **results.header("quick" if plan.quick else "full", options.command_line,
                                                      plan, builder.describe()),
             "baseline": "seed", "request": {"port": 5000, "ready": "/health", "url": "/hello/bench"},
             **study.measure()}
    found["startup_phases"] = startup_phases_study({n: VARIANTS[n].tag for n in PHASED}, plan.stop_runs + 2)
    found["hardening_cost"] = control.hardening_cost_study(VARIANTS["slim"].tag, plan.control_rounds,
                                                           plan.control_seconds, study.quietness)
    found["noise"] = study.quietness.summary()
    return image_report.evaluate(results.finish(found))


STUDY = results.Study(
    name="study", summary="build all variants and run the image study on them (the default)",
    files=("results.json", "report.md", "chart.svg"), add_options=add_options, run=run,
    render=image_report.render, evaluate=image_report.evaluate, guarantees=image_report.guarantees,
    gaps=image_report.gaps, upgrades=image_report.UPGRADES,
    shape=image_report.shape, plans=PLANS, builds=True)
