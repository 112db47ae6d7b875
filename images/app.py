"""`python -m images app`: a WSGI app of the user's in the three images, built from the same Dockerfiles as
hello-api with its package folder, lock file and WSGI name as build arguments (APP_SOURCE, APP_LOCK, APP_WSGI,
APP_HEALTH_PATH). micro keeps only what a run was seen to use, so it is built when the app's own tests are
given (TRACE_TESTS, TRACE_COMMAND: they drive the app while the trace records, and must pass against the cut
image; TRACE_KEEP: files to keep on purpose). What is wrong with the arguments is said before anything is
built."""

import fnmatch
from pathlib import Path, PurePosixPath

from service.config import health_path, wsgi_name

from .docker import ROOT, progress
from .variants import VARIANTS, Builder

APP_VARIANTS = ("slim", "distroless", "micro")
DEFAULT_COMMAND = "python3 -m unittest discover"  # in the tests' folder, stdlib only: the trace stage has no pip
DOCKERIGNORE = ROOT / ".dockerignore"


class AppError(ValueError):
    """Arguments that cannot build: the message says which and what to do."""


def allowed_in_context(path: str) -> bool:
    """Whether .dockerignore (an allow-list: `*`, then `!PATH` lines) lets `path` into the build context."""
    patterns = [line.strip()[1:].rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip().startswith("!")]
    return any(path == p or path.startswith(f"{p}/") or fnmatch.fnmatch(path, p) for p in patterns)


def build_arguments(source: str, lock: str, wsgi: str, health: str = "/health", tests: str | None = None,
                    command: str = DEFAULT_COMMAND, keep: str = "") -> list[str]:
    """The build arguments for the app, each checked: the folders and the lock in this checkout and let into
    the build context, the name importable from where the image puts the folder (/app/FOLDER)."""
    folder, lockfile = PurePosixPath(source.rstrip("/")), PurePosixPath(lock)
    tests_folder = PurePosixPath(tests.rstrip("/")) if tests else None
    for path, what in ((folder, "the app's folder"), (lockfile, "the lock file"), (tests_folder, "the tests' folder")):
        if path is None:
            continue
        if path.is_absolute() or ".." in path.parts:
            raise AppError(f"{what} {path} must be a path inside this checkout, relative to it (the build context)")
    if not (ROOT / folder).is_dir():
        raise AppError(f"{folder} is not a folder of this checkout: name the app's package folder")
    if tests_folder is not None and not (ROOT / tests_folder).is_dir():
        raise AppError(f"{tests_folder} is not a folder of this checkout: name the folder of the app's tests")
    if not (ROOT / lockfile).is_file():
        raise AppError(f"{lockfile} is not a file of this checkout: name the app's lock file (pip's --hash form)")
    if "waitress==" not in (ROOT / lockfile).read_text():
        raise AppError(f"{lockfile} pins no waitress, which the server needs: copy its lines from requirements.lock")
    for path in filter(None, (folder, lockfile, tests_folder)):
        if not allowed_in_context(str(path)):
            raise AppError(f"{path} is not in the build context: add the line !{path}{'' if path == lockfile else '/'} "
                           "to .dockerignore, an allow-list")
    try:
        wsgi_name(wsgi)
        health_path(health)
    except ValueError as wrong:
        raise AppError(f"--wsgi {wsgi!r} / --health-path {health!r}: expected {wrong}") from None
    if not wsgi or wsgi.split(":")[0].split(".")[0] != folder.name:
        raise AppError(f"--wsgi {wsgi!r} must import from {folder.name} (the image puts {folder} at /app/{folder.name})"
                       f": {folder.name}.MODULE:NAME, or {folder.name}:NAME")
    traced = ["--build-arg", f"TRACE_TESTS={tests_folder}", "--build-arg", f"TRACE_COMMAND={command}",
              "--build-arg", f"TRACE_KEEP={keep}"] if tests_folder else []
    return ["--build-arg", f"APP_SOURCE={folder}", "--build-arg", f"APP_LOCK={lockfile}",
            "--build-arg", f"APP_WSGI={wsgi}", "--build-arg", f"APP_HEALTH_PATH={health}", *traced]


def repository_for(source: str, tag: str | None) -> str:
    """The images' repository: the one given, else the app folder's name."""
    return tag or Path(source.rstrip("/")).name.lower()


def build_app(builder: Builder, arguments: list[str], repository: str) -> list[str]:
    """Build the app (its checked build_arguments) in slim, distroless and, with its tests, micro; returns the
    tags."""
    tags = []
    for variant in APP_VARIANTS if any(a.startswith("TRACE_TESTS=") for a in arguments) else APP_VARIANTS[:2]:
        seconds, _ = builder.build(VARIANTS[variant], arguments, tag=f"{repository}:{variant}")
        progress(f"built {repository}:{variant} in {seconds:.1f}s")
        tags.append(f"{repository}:{variant}")
    return tags
