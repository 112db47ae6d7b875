"""What every study shares around its measurements: the header of a run, and the study's declaration.

A study is one module under bench/studies/ that declares a `Study`: its sub-command and options, the files
it writes (its JSON first, then what renders from that JSON), how it runs, how its targets and guarantees
are read from the figures, and what a complete run holds. `cli.py` only parses arguments and runs one;
`bench report` and `bench check` go through every study whose JSON a directory holds.

Every study's JSON carries its format version under FORMAT_KEY (a document written before versions were
recorded is version 1). A study lists the steps from each version to the next, and `upgraded` (the one place
a document is read) applies them in turn, as pyperf's _bench.py does: renderers only see the current shape.
"""

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

from images.docker import docker, image_store, progress

from .containers import engine_address


def header(mode: str, command: str, plan: object | None = None, bases: str | None = None) -> dict:
    """Date, mode, the exact command, the plan, and the machine: the top of every study's JSON."""
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "mode": mode, "command": command,
        "plan": asdict(plan) if is_dataclass(plan) else plan,
        "machine": {"platform": platform.platform(), "kernel": platform.release(), "machine": platform.machine(),
                    "cpus": os.cpu_count(), "docker_server": docker_version(), "image_store": image_store(),
                    "engine_address": engine_address(),
                    **({"bases": bases} if bases else {})},
        "load_average": {"start": os.getloadavg()[0]},
    }


def finish(results: dict) -> dict:
    """The load average at the end, beside the one at the start."""
    results.setdefault("load_average", {})["end"] = os.getloadavg()[0]
    return results


def docker_version() -> str:
    return docker("version", "--format", "{{.Server.Version}}", quiet=True).stdout.strip()


def markdown_file(name: str, markdown: Callable[[dict], str]) -> Callable[[dict], dict[str, str]]:
    """A study's `render` when all it renders is one Markdown file."""
    return lambda results: {name: markdown(results)}


FORMAT_KEY = "format"
Upgrade = Callable[[dict], dict]  # one step: a document of version N in, the same figures at version N + 1 out


def upgraded(document: dict, upgrades: tuple[Upgrade, ...]) -> dict:
    """`document` in the current format: every step from its version on applied in order."""
    version = document.pop(FORMAT_KEY, 1)
    if version > len(upgrades) + 1:
        raise RuntimeError(f"format {version} is newer than this bench reads ({len(upgrades) + 1}): update the bench")
    for step in upgrades[version - 1:]:
        document = step(document)
    return document


def nothing(_: dict) -> list[str]:
    return []


def unchanged(results: dict) -> dict:
    return results


@dataclass(frozen=True)
class Study:
    name: str  # the sub-command
    summary: str  # its line in --help
    files: tuple[str, ...]  # the JSON first, then every file rendered from it
    add_options: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict]  # measures; the caller writes what it returns
    render: Callable[[dict], dict[str, str]]  # file name -> text, from the JSON alone
    evaluate: Callable[[dict], dict] = unchanged  # the targets, read again from the figures
    guarantees: Callable[[dict], list[str]] = nothing  # what a run must not break; broken: exit 1
    gaps: Callable[[dict], list[str]] = nothing  # what it could not measure, and why; any: exit 3
    shape: Callable[[dict], list[str]] = nothing  # what a complete run holds that this one lacks
    plans: dict[str, object] | None = None  # "quick" and "full": its runs and durations, as options.plan
    description: str = ""  # its --help text, when the summary is not enough
    builds: bool = False  # needs images built: gets `--bases` and a Builder as options.builder
    upgrades: tuple[Upgrade, ...] = ()  # step N turns a version-N document into version N + 1

    @property
    def version(self) -> int:
        """The format this bench writes: one more than the steps that lead to it."""
        return len(self.upgrades) + 1

    @property
    def json(self) -> str:
        return self.files[0]

    def holds(self, directory: Path) -> bool:
        return (directory / self.json).is_file()

    def load(self, directory: Path) -> dict:
        """The study's JSON in `directory`, upgraded to the current format, its targets read again."""
        return self.evaluate(upgraded(json.loads((directory / self.json).read_text()), self.upgrades))

    def write(self, results: dict, directory: Path) -> None:
        """Its own files only: the JSON (format version first) and what renders from it."""
        directory.mkdir(parents=True, exist_ok=True)
        document = {FORMAT_KEY: self.version, **{k: v for k, v in results.items() if k != FORMAT_KEY}}
        (directory / self.json).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        for name, text in self.render(results).items():
            (directory / name).write_text(text)
        progress(f"results in {directory}/: {', '.join(self.files)}")

    def rerender(self, directory: Path) -> None:
        self.write(self.load(directory), directory)

    def check(self, directory: Path) -> list[str]:
        """Problems with this study's files in `directory`: missing, stale, incomplete, guarantees broken."""
        results = self.load(directory)
        problems = [f"{self.json}: {problem}" for problem in self.shape(results)]
        for name, text in self.render(results).items():
            if not (directory / name).is_file() or (directory / name).read_text() != text:
                problems.append(f"{name} is missing or not what {self.json} renders to: run "
                                f"python -m bench report {directory}")
        return problems + [f"guarantee broken: {problem}" for problem in self.guarantees(results)]
