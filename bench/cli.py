"""The image study and its tools. Without a sub-command: `study`. Every Docker command is printed."""

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from . import bases, commits, guarantees, images, latency, profile, reliability, report, rollout, study, verify, workers
from .docker import DockerError

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "latest"


def add_bases_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bases", choices=("auto", "registry", "local"), default="auto",
                        help="registry: the official images; local: made by `bench bases` from Debian packages "
                             "(first if missing); auto (default): registry when it can be pulled, else local")
    parser.add_argument("--offline", dest="bases", action="store_const", const="local",
                        help="same as --bases local")


def add_study_options(parser: argparse.ArgumentParser) -> None:
    add_bases_option(parser)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs (a few minutes; for CI)")
    parser.add_argument("--runs", type=int, help="start-up rounds (default 15, quick 5)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default {DEFAULT_OUTPUT}")
    parser.add_argument("--label", default="hello-api variants", help="title of the report")


def has_rollout(directory: Path) -> bool:
    return (directory / "rollout.json").is_file()


def has_study(directory: Path) -> bool:
    """The image study's results, or nothing else either: then report.check says what is missing."""
    others = ("workers.json", "latency.json", "commits.json", "profile.json")
    return (directory / "results.json").is_file() or not (
        has_rollout(directory) or any((directory / name).is_file() for name in others))


def guarantees_broken(directory: Path) -> list[str]:
    """The guarantees (not the speed targets) that a results directory's runs broke."""
    problems = []
    if (directory / "results.json").is_file():
        problems += guarantees.study_failures(json.loads((directory / "results.json").read_text()))
    if (directory / "reliability.json").is_file():
        problems += guarantees.reliability_failures(json.loads((directory / "reliability.json").read_text()))
    if has_rollout(directory):
        problems += rollout.failures(json.loads((directory / "rollout.json").read_text()))
    return [f"guarantee broken: {problem}" for problem in problems]


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except FileNotFoundError as missing:
        print(f"bench: error: {missing.filename or missing} was not found: install it, or set DOCKER to a Docker "
              "client that can build with BuildKit", file=sys.stderr)
    except (DockerError, RuntimeError, subprocess.TimeoutExpired) as failure:
        print(f"bench: error: {failure}", file=sys.stderr)
    return 1


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


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    study_parser = commands.add_parser("study", help="build all variants and run every study (default)")
    add_study_options(study_parser)
    parser.epilog = ("without a sub-command, these options of `study` apply (python -m bench --offline --quick):\n"
                     + option_lines(study_parser) + "\n\neach sub-command has its own: python -m bench SUB --help.\n"
                     "HELLO_API_IMAGE names the image repository built and run (default hello-api).")
    make = commands.add_parser("bases", help="make both base images from Debian trixie packages (no registry)")
    make.add_argument("--rebuild", action="store_true", help="make them again even if they exist")
    add_bases_option(commands.add_parser("images", help="build hello-api:slim, :distroless, :micro and :lb (HAProxy)"))
    abuse = commands.add_parser("reliability", help="soak, stop under load, hostile clients (minutes)")
    add_bases_option(abuse)
    abuse.add_argument("--quick", action="store_true", help="a 20 s soak instead of 60 s")
    abuse.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default {DEFAULT_OUTPUT}")
    roll = commands.add_parser("rollout", help="rolling updates of the swarm stack under load, per image and "
                                                "balancer; compose --force-recreate (minutes)")
    add_bases_option(roll)
    roll.add_argument("--quick", action="store_true", help="2 replicas and one update per image instead of 3 and 3")
    roll.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default {DEFAULT_OUTPUT}")
    fixed = commands.add_parser("latency", help="latency at fixed request rates (open loop): every image, seed, "
                                                "gunicorn, granian (minutes)")
    add_bases_option(fixed)
    fixed.add_argument("--quick", action="store_true", help="one 3 s round per rate instead of two of 10 s")
    fixed.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default {DEFAULT_OUTPUT}")
    many = commands.add_parser("workers", help="APP_WORKERS=1 vs auto, and gunicorn and granian (minutes)")
    add_bases_option(many)
    many.add_argument("--quick", action="store_true", help="shorter, fewer runs (about 4 minutes; for CI)")
    many.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default {DEFAULT_OUTPUT}")
    history = commands.add_parser("commits", help="the service at several commits side by side on loopback, "
                                                  "with plain waitress as the control (a minute or two)")
    history.add_argument("revisions", nargs="+", help="git revisions, e.g. 4324f7c HEAD")
    history.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    history.add_argument("--seconds", type=int, default=5, help="seconds per wrk run (default 5)")
    history.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default {DEFAULT_OUTPUT}")
    sampled = commands.add_parser("profile", help="py-spy of the service at revisions (default HEAD) and of plain "
                                                  "waitress under wrk load, on loopback (a minute)")
    sampled.add_argument("revisions", nargs="*", default=["HEAD"], help="git revisions (default HEAD)")
    sampled.add_argument("--seconds", type=int, default=profile.SECONDS, help=f"per recording (default "
                                                                               f"{profile.SECONDS})")
    sampled.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"default {DEFAULT_OUTPUT}")
    render = commands.add_parser("report", help="render the reports and charts again from their JSON")
    render.add_argument("directory", type=Path)
    complete = commands.add_parser("check", help="check that a results directory is complete and renders")
    complete.add_argument("directory", type=Path)
    rebuild = commands.add_parser("verify", help="check an image's SBOM against its files, then rebuild it from a "
                                                 "clean builder (docker builder prune -af) and compare its layers")
    rebuild.add_argument("image", help=f"a variant ({', '.join(images.PROJECT_IMAGES)}) or an image it built")
    rebuild.add_argument("--no-rebuild", dest="rebuild", action="store_false", help="the SBOM check only")
    rebuild.add_argument("--syft", action="store_true", help="also print what syft finds that the SBOM does "
                                                             "not, and the other way round (no rebuild)")
    add_bases_option(rebuild)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["study", *argv]
    options = parser.parse_args(argv)

    if options.command == "bases":
        bases.make_bases(options.rebuild)
        print("build arguments for these bases: " + " ".join(bases.build_args()))
    elif options.command == "images":
        offline = images.choose_offline(options.bases)
        images.build_images(offline)
        verify.write_records(offline)
    elif options.command == "verify" and options.syft:
        print("\n".join(verify.syft_comparison(verify.resolve(options.image)[0])))
    elif options.command == "verify":
        verify.resolve(options.image)  # a missing image is said before any registry is tried
        offline = images.choose_offline(options.bases) if options.rebuild else False
        problems = verify.verify(options.image, offline, options.rebuild)
        for problem in problems:
            print(f"bench verify: {problem}", file=sys.stderr)
        if problems:
            print(f"bench verify: {options.image} does not verify ({len(problems)} problem(s) above)", file=sys.stderr)
            return 1
        print(f"bench verify: {options.image}: the SBOM accounts for its files"
              + ("; a rebuild from a clean builder gave the same project layers" if options.rebuild else ""))
    elif options.command == "study":
        if options.runs is not None and options.runs < 3:
            parser.error("--runs must be at least 3: a median of fewer runs says little")
        plan = study.Plan.for_mode(options.quick, options.runs)
        study.run_study(images.choose_offline(options.bases), plan, options.output, options.label)
    elif options.command == "reliability":
        images.build_images(images.choose_offline(options.bases))
        results = reliability.run_reliability(options.output, options.quick)
        if (options.output / "results.json").is_file():
            study.rerender(options.output)  # so report.md links the reliability results beside it
        for failure in results["failures"]:
            print(f"bench reliability: guarantee broken: {failure}", file=sys.stderr)
        return 1 if results["failures"] else 0
    elif options.command == "rollout":
        offline = images.choose_offline(options.bases)
        images.build_images(offline, (*images.ROLLOUT_EXTRA_IMAGES, *images.DEPLOY_IMAGES))
        broken = rollout.failures(rollout.run_rollout(options.output, options.quick))
        for failure in broken:
            print(f"bench rollout: guarantee broken: {failure}", file=sys.stderr)
        return 1 if broken else 0
    elif options.command == "latency":
        latency.run_latency(images.choose_offline(options.bases), options.quick, options.output)
        if (options.output / "results.json").is_file():
            study.rerender(options.output)  # so report.md links the latency results beside it
    elif options.command == "profile":
        profile.run_profile(options.revisions, options.seconds, options.output)
    elif options.command == "commits":
        commits.run_commits(options.revisions, options.rounds, options.seconds, options.output)
    elif options.command == "workers":
        results = workers.run_workers(images.choose_offline(options.bases), options.quick, options.output)
        for failure in results["failures"]:
            print(f"bench workers: guarantee broken: {failure}", file=sys.stderr)
        return 1 if results["failures"] else 0
    elif options.command == "report":
        if has_study(options.directory):
            study.rerender(options.directory)
        if has_rollout(options.directory):
            rollout.render(options.directory)
        workers.rerender(options.directory)
        latency.rerender(options.directory)
        commits.rerender(options.directory)
        profile.rerender(options.directory)
    elif options.command == "check":
        problems = report.check(options.directory) if has_study(options.directory) else []
        if has_rollout(options.directory):
            problems += rollout.check(options.directory)
        problems += guarantees_broken(options.directory) + workers.check(options.directory)
        problems += latency.check(options.directory) + commits.check(options.directory)
        problems += profile.check(options.directory)
        for problem in problems:
            print(f"bench check: {problem}", file=sys.stderr)
        if problems:
            return 1
        print(f"bench check: {options.directory} is complete and renders")
    return 0
