"""Build the project's images (or your own app in them), make their bases without a registry, verify an image,
generate the Dockerfiles. Every Docker command is printed."""

import argparse
import subprocess
import sys
from collections.abc import Callable

from . import bases, dockerfiles, platforms, registry, verify
from .app import AppError, build_app, build_arguments, repository_for
from .docker import ROOT, DockerError, progress
from .variants import DEPLOY_IMAGES, PROJECT_IMAGES, VARIANTS, Builder


def add_bases_option(parser: argparse.ArgumentParser) -> None:
    """--bases and --offline: the bases a build starts from (here, and in the bench's studies that build)."""
    parser.add_argument("--bases", choices=("auto", "registry", "local"), default="auto",
                        help="registry: the official images; local: made by `python -m images bases` from Debian "
                             "packages (first if missing); auto (default): registry when it can be pulled, else "
                             "local")
    parser.add_argument("--offline", dest="bases", action="store_const", const="local",
                        help="same as --bases local")


def architectures(text: str) -> list[str]:
    """--platform's value: linux/amd64, linux/arm64 or both, comma-separated (`linux/` may be left out), or
    `all`: this machine's and every other that QEMU runs here (the others are said and left out)."""
    if text == "all":
        found = platforms.runnable()
        for architecture in sorted(set(platforms.ARCHITECTURES) - set(found)):
            progress(f"linux/{architecture} left out: QEMU does not run its binaries here (bash scripts/setup.sh "
                     "registers it, as root)")
        return found
    found = [part.strip().removeprefix("linux/") for part in text.split(",") if part.strip()]
    wrong = [a for a in found if a not in platforms.ARCHITECTURES]
    if wrong or not found:
        raise argparse.ArgumentTypeError(f"{text!r}: name linux/amd64, linux/arm64 or both, comma-separated, or all")
    return list(dict.fromkeys(found))


def add_platform_option(parser: argparse.ArgumentParser) -> None:
    native = f"linux/{platforms.native()}"
    parser.add_argument("--platform", type=architectures, default=[platforms.native()],
                        help=f"linux/amd64, linux/arm64 or both, comma-separated, or all (this machine's and those "
                             f"QEMU runs here); default {native}, this machine's. Another architecture's build runs "
                             "under QEMU and is tagged with it (hello-api:micro-arm64)")


def parser_for() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m images", description=__doc__,
                                     epilog="HELLO_API_IMAGE names the image repository built (default hello-api).")
    commands = parser.add_subparsers(dest="command", required=True)
    built = ", ".join(VARIANTS[name].tag for name in DEPLOY_IMAGES)
    building = commands.add_parser("build", help=f"build {built} (HAProxy), then record their SBOMs and "
                                                 "bases in images/.generated/")
    add_bases_option(building)
    add_platform_option(building)
    app = commands.add_parser("app", help="build a WSGI app of your own in the images (TAG:slim, TAG:distroless, "
                                          "and with --tests TAG:micro)")
    app.add_argument("source", help="the app's package folder, a path in this checkout listed in .dockerignore")
    app.add_argument("--lock", required=True, help="its lock file: every dependency, waitress among them, "
                                                   "pinned with --hash")
    app.add_argument("--wsgi", required=True, help="MODULE:NAME or MODULE:FACTORY() of the app, MODULE in the "
                                                   "folder (FOLDER.app:app)")
    app.add_argument("--health-path", default="/health", help="what the health check GETs (default /health; any "
                                                               "2xx is healthy)")
    app.add_argument("--tests", help="the app's tests' folder: micro is built too, traced while "
                                      "--trace-command runs there against the live server ($BASE_URL)")
    app.add_argument("--trace-command", default="python3 -m unittest discover",
                     help="run in the tests' folder by micro's trace (default: %(default)s)")
    app.add_argument("--keep", default="", help="micro: files no run used, kept on purpose (paths or globs)")
    app.add_argument("--tag", help="the images' repository (default: the folder's name)")
    add_bases_option(app)
    make = commands.add_parser("bases", help="make both base images from Debian trixie packages (no registry)")
    make.add_argument("--rebuild", action="store_true", help="make them again even if they exist")
    add_platform_option(make)
    rebuild = commands.add_parser("verify", help="check an image's SBOM against its files, then rebuild it from a "
                                                 "clean builder (docker builder prune -af) and compare its layers")
    rebuild.add_argument("image", help=f"a variant ({', '.join(PROJECT_IMAGES)}) or an image it built")
    rebuild.add_argument("--no-rebuild", dest="rebuild", action="store_false", help="the SBOM check only")
    rebuild.add_argument("--syft", action="store_true", help="also print what syft finds that the SBOM does "
                                                             "not, and the other way round (no rebuild)")
    add_bases_option(rebuild)
    served = commands.add_parser("registry", help="start or stop a registry on this machine (Debian's "
                                                  "docker-registry on loopback, storage in images/.generated/)")
    served.add_argument("action", choices=("start", "stop"))
    served.add_argument("--address", default=registry.DEFAULT_ADDRESS, help="where it listens (default "
                                                                            "%(default)s)")
    pushing = commands.add_parser("push", help="push the built images to a registry as REGISTRY/hello-api:VARIANT "
                                               "and print each one's reference by digest")
    pushing.add_argument("variants", nargs="*", metavar="VARIANT",
                         help=f"default: {', '.join(DEPLOY_IMAGES)}")
    pushing.add_argument("--registry", default=registry.DEFAULT_ADDRESS,
                         help="HOST:PORT of the registry (default %(default)s, `images registry start`'s)")
    pushing.add_argument("--pin", action="store_true", help="then name the pushed images by digest in "
                                                            "deploy/kubernetes/ (its nodes pull by name)")
    commands.add_parser("dockerfiles", help="write Dockerfile, Dockerfile.distroless and Dockerfile.micro again "
                                            "from images/templates/")
    return parser


def run_reporting_failures(program: str, run: Callable[[list[str]], int], argv: list[str] | None) -> int:
    """A command line's `run` (this one's, the bench's), a failure it expects said in one line, exit status 1."""
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except FileNotFoundError as missing:
        print(f"{program}: error: {missing.filename or missing} was not found: install it, or set DOCKER to a "
              "Docker client that can build with BuildKit", file=sys.stderr)
    except (DockerError, RuntimeError, subprocess.TimeoutExpired) as failure:  # NoEmulation, RegistryError too
        print(f"{program}: error: {failure}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    return run_reporting_failures("images", run, argv)


def run(argv: list[str]) -> int:
    options = parser_for().parse_args(argv)
    if options.command == "bases":
        for architecture in options.platform:
            bases.make_bases(options.rebuild, architecture)
            print(f"build arguments for the linux/{architecture} bases: " + " ".join(bases.build_args(architecture)))
    elif options.command == "build":
        for architecture in options.platform:
            build_for(options.bases, architecture)
    elif options.command == "app":
        try:
            arguments = build_arguments(options.source, options.lock, options.wsgi, options.health_path,
                                        options.tests, options.trace_command, options.keep)
        except AppError as wrong:
            print(f"images app: error: {wrong}", file=sys.stderr)
            return 2
        tags = build_app(Builder.choose(options.bases), arguments, repository_for(options.source, options.tag))
        print(f"built {', '.join(tags)}: docker run -d -p 8080:5000 {tags[-1]}")
    elif options.command == "verify":
        return run_verify(options)
    elif options.command == "registry":
        if options.action == "start":
            registry.start(options.address)
        elif not registry.stop():
            print("images registry: no registry started here is running")
    elif options.command == "push":
        return run_push(options)
    elif options.command == "dockerfiles":
        written = dockerfiles.write()
        print("wrote " + ", ".join(path.name for path in written) if written else "the Dockerfiles are current")
    return 0


def build_for(bases_mode: str, architecture: str) -> None:
    """This machine's architecture: every image, their SBOMs and bases recorded. Another: the API images
    (the load balancer is for this machine's swarm), under QEMU."""
    builder = Builder.choose(bases_mode, architecture)
    if platforms.is_native(architecture):
        builder.build_all()
        verify.write_records(builder)
    else:
        builder.build_all(PROJECT_IMAGES)


def run_push(options: argparse.Namespace) -> int:
    unknown = [v for v in options.variants if v not in DEPLOY_IMAGES]
    if unknown:
        print(f"images push: error: {', '.join(unknown)}: name variants among {', '.join(DEPLOY_IMAGES)}",
              file=sys.stderr)
        return 2
    pushed = registry.push_all(options.variants or list(DEPLOY_IMAGES), options.registry)
    for image in pushed:
        progress(f"pushed {image.variant} for {', '.join('linux/' + a for a in image.architectures)}")
        print(image.pinned)
    if options.pin:
        changed = registry.pin(pushed)
        progress("pinned by digest: " + (", ".join(str(path.relative_to(ROOT)) for path in changed) or
                                          "nothing (no manifest names a pushed variant)"))
    return 0


def run_verify(options: argparse.Namespace) -> int:
    if options.syft:
        print("\n".join(verify.syft_comparison(verify.resolve(options.image)[0])))
        return 0
    verify.resolve(options.image)  # a missing image is said before any registry is tried
    problems = verify.verify(options.image, Builder.choose(options.bases) if options.rebuild else None)
    for problem in problems:
        print(f"images verify: {problem}", file=sys.stderr)
    if problems:
        print(f"images verify: {options.image} does not verify ({len(problems)} problem(s) above)", file=sys.stderr)
        return 1
    print(f"images verify: {options.image}: the SBOM accounts for its files"
          + ("; a rebuild from a clean builder gave the same project layers" if options.rebuild else ""))
    return 0
