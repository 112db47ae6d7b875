"""The studies' command line: one sub-command a study, then `report` and `check`; without a sub-command,
`study`. Every Docker command is printed. Building and verifying the images: `python -m images`."""

import argparse
import shlex
import sys
import textwrap
from pathlib import Path

from images.cli import add_bases_option, run_reporting_failures
from images.variants import Builder

from .results import Study
from .studies import STUDIES, STUDY, by_files

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "latest"
EXIT_GUARANTEE_BROKEN = 1
EXIT_INCOMPLETE = 3  # the report is written, but some figure could not be measured (it says which and why)


def add_study_parser(commands: argparse._SubParsersAction, study: Study) -> argparse.ArgumentParser:
    parser = commands.add_parser(study.name, help=study.summary, description=study.description or study.summary,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    study.add_options(parser)
    if study.builds:
        add_bases_option(parser)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default {DEFAULT_OUTPUT}")
    parser.set_defaults(study=study)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_reporting_failures("bench", run, argv)


def option_lines(parser: argparse.ArgumentParser) -> str:
    """A sub-command's options, one line each, for the top-level --help."""
    lines = []
    for action in parser._actions:
        if not action.option_strings or "-h" in action.option_strings:
            continue
        value = f" {action.dest.upper()}" if action.nargs != 0 else ""
        lines.append(textwrap.fill(f"{', '.join(action.option_strings)}{value}: {action.help}", width=100,
                                   initial_indent="  ", subsequent_indent="      "))
    return "\n".join(lines)


def parser_for() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    parsers = {study.name: add_study_parser(commands, study) for study in STUDIES}
    parser.epilog = ("without a sub-command, these options of `study` apply (python -m bench --offline --quick):\n"
                     + option_lines(parsers[STUDY.name]) + "\n\neach sub-command has its own: python -m bench "
                     "SUB --help.\nHELLO_API_IMAGE names the image repository built and run (default hello-api).")
    render = commands.add_parser("report", help="render the reports and charts again from their JSON")
    render.add_argument("directory", type=Path)
    complete = commands.add_parser("check", help="check that a results directory is complete and renders")
    complete.add_argument("directory", type=Path)
    return parser


def run(argv: list[str]) -> int:
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = [STUDY.name, *argv]
    options = parser_for().parse_args(argv)
    options.command_line = shlex.join(["python", "-m", "bench", *argv])
    if getattr(options, "study", None):
        return run_study(options.study, options)
    if options.command == "report":
        for study in present(options.directory):
            study.rerender(options.directory)
    elif options.command == "check":
        return run_check(options.directory)
    return 0


def run_study(study: Study, options: argparse.Namespace) -> int:
    """Build what it needs against bases chosen once, measure, write; the exit status says what broke."""
    if study.plans:
        options.plan = study.plans["quick" if options.quick else "full"]
    if study.builds:
        options.builder = Builder.choose(options.bases)
    results = study.run(options)
    study.write(results, options.output)
    broken = study.guarantees(results)
    gaps = study.gaps(results)
    for line in [f"guarantee broken: {problem}" for problem in broken] + [f"not measured: {gap}" for gap in gaps]:
        print(f"bench {study.name}: {line}", file=sys.stderr)
    if broken:
        return EXIT_GUARANTEE_BROKEN
    return EXIT_INCOMPLETE if gaps else 0


def present(directory: Path) -> list[Study]:
    return [study for study in by_files() if study.holds(directory)]


def run_check(directory: Path) -> int:
    studies = present(directory)
    problems = [] if studies else [f"{directory} holds no study's results ({', '.join(s.json for s in by_files())})"]
    for study in studies:
        problems += study.check(directory)
    for problem in problems:
        print(f"bench check: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"bench check: {directory} is complete and renders")
    return 0

