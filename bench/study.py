"""`python -m bench study`: build every variant, run every study, save JSON, Markdown and SVG."""

import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from . import measure, overhead, reliability, report
from .docker import progress
from .images import VARIANTS, build
from .noise import Quietness

ORDER = ("seed", "naive", "slim", "distroless", "micro")
PHASED = ("slim", "distroless", "micro")  # the images whose service logs the moment it listens
EDITED_FILES = {  # variant -> (dependency file, code file), relative to its build context
    "seed": ("requirements.txt", "app.py"),
    "naive": ("requirements.lock", "service/app.py"),
    "slim": ("requirements.lock", "service/app.py"),
    "distroless": ("requirements.lock", "service/app.py"),
    "micro": ("requirements.lock", "service/app.py"),
}


@dataclass(frozen=True)
class Plan:
    quick: bool
    startup_runs: int
    stop_runs: int
    load_seconds: int
    load_runs: int
    control_rounds: int  # alternating rounds of the service against plain waitress, per route
    control_seconds: int
    connections: int = 16

    @classmethod
    def for_mode(cls, quick: bool, runs: int | None) -> "Plan":
        if quick:
            return cls(True, runs or 5, 1, 3, 2, 3, 2)
        return cls(False, runs or 15, 3, 10, 3, 5, 5)


def machine(offline: bool) -> dict:
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "platform": platform.platform(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "docker_server": measure.docker_version(),
        "bases": "local (made from Debian trixie packages by `python -m bench bases`)" if offline
        else "registry (python:3.13-slim, gcr.io/distroless/python3-debian13:nonroot)",
    }


def run_study(offline: bool, plan: Plan, output: Path, label: str) -> dict:
    output.mkdir(parents=True, exist_ok=True)
    results = {"label": label, "mode": "quick" if plan.quick else "full", "plan": plan.__dict__,
               "machine": machine(offline), "variants": {}}
    variants = {name: VARIANTS[name] for name in ORDER}
    quietness = Quietness()
    for name, variant in variants.items():
        progress(f"building {variant.tag} ({variant.note})")
        build(variant, offline)
        results["variants"][name] = {"tag": variant.tag, "note": variant.note}
    for name, variant in variants.items():
        progress(f"build-cache study: {name}")
        results["variants"][name]["cache"] = measure.cache_study(variant, offline, *EDITED_FILES[name])
    for name, variant in variants.items():
        progress(f"size study: {name}")
        results["variants"][name]["size"] = measure.size_study(variant)
    with quietness.around("start-up"):
        startup = measure.startup_study({n: v.tag for n, v in variants.items()}, VARIANTS["distroless"].tag,
                                        plan.startup_runs)
    results["noop_startup"] = startup.pop(measure.NOOP)
    for name, values in startup.items():
        results["variants"][name]["startup"] = values
    progress("start-up, phase by phase: the project images")
    results["startup_phases"] = measure.startup_phases_study(
        {n: VARIANTS[n].tag for n in PHASED}, plan.stop_runs + 2)
    for name, variant in variants.items():
        progress(f"stop study: {name} ({plan.stop_runs} run(s))")
        results["variants"][name]["stop"] = measure.stop_study(variant.tag, plan.stop_runs)
    for name, variant in variants.items():
        progress(f"load study: {name}")
        with quietness.around(f"load: {name}"):
            results["variants"][name]["load"] = measure.load_study(variant.tag, plan.load_seconds,
                                                                   plan.connections, plan.load_runs)
    results["hardening_cost"] = overhead.hardening_cost_study(VARIANTS["slim"].tag, plan.control_rounds,
                                                              plan.control_seconds, quietness)
    results["noise"] = quietness.summary()
    results["targets"] = report.evaluate_targets(results)
    report.write_all(results, output)
    progress(f"results in {output}/: results.json, report.md, chart.svg")
    return results


def rerender(directory: Path) -> None:
    """Write report.md, chart.svg (and reliability.md, when its JSON is there) again from the JSON."""
    results = json.loads((directory / "results.json").read_text())
    results["targets"] = report.evaluate_targets(results)
    report.write_all(results, directory)
    if (directory / "reliability.json").is_file():
        abuse = json.loads((directory / "reliability.json").read_text())
        (directory / "reliability.md").write_text(reliability.markdown(abuse))
