"""Command line of the bench: one sub-command per job, each printing what it runs."""

import argparse

from . import bases, images


def add_bases_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bases", choices=("auto", "registry", "local"), default="auto",
                        help="registry: the official images; local: made by `bench bases` from Debian packages "
                             "(first if missing); auto (default): registry when it can be pulled, else local")
    parser.add_argument("--offline", dest="bases", action="store_const", const="local",
                        help="same as --bases local")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("bases", help="make both base images from Debian trixie packages (no registry)")
    make.add_argument("--rebuild", action="store_true", help="make them again even if they exist")
    build = commands.add_parser("images", help="build hello-api:slim and hello-api:distroless")
    add_bases_option(build)
    options = parser.parse_args(argv)
    if options.command == "bases":
        bases.make_bases(options.rebuild)
        print("build arguments for these bases: " + " ".join(bases.build_args()))
    elif options.command == "images":
        images.build_images(images.choose_offline(options.bases))
    return 0
