"""Warm bytecode for an image, in a layer that rebuilds to the same digest (standard library only).

Neither base ships the standard library's bytecode (the official python images delete it; distroless never
runs Debian's py3compile). The Dockerfiles run this in a stage of their own: it imports the service (and the
module of the app APP_WSGI names, if any), which writes bytecode for exactly the modules they load, then
copies every __pycache__ directory of the standard library into OUT, where every time is set to the epoch.
The runtime copies OUT's contents into /.
Done in a stage apart because a RUN in the distroless runtime left the build's time on /etc in its layer
(most likely BuildKit 0.8's mount points for /etc/hosts, /etc/hostname and /etc/resolv.conf, which that
base lacks, made and removed around the step).

Usage: python3 bytecode.py OUT
"""

import importlib
import os
import shutil
import sys
import sysconfig
from pathlib import Path

MODULES = ("service.server", "service.healthcheck")
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))


def copy_caches(stdlib: Path, out: Path) -> int:
    """Every __pycache__ below STDLIB, copied to OUT + its path; returns the number of files."""
    count = 0
    for directory, names, _ in os.walk(stdlib):
        names.sort()
        if "__pycache__" in names:
            cache = Path(directory, "__pycache__")
            target = out / cache.relative_to("/")
            shutil.copytree(cache, target)
            count += len(os.listdir(target))
    return count


def set_times(root: Path) -> None:
    """Every entry below ROOT (ROOT too) to SOURCE_DATE_EPOCH, links themselves: BuildKit 0.8 copies file
    times into layers as they are and knows no SOURCE_DATE_EPOCH of its own."""
    for directory, names, files in os.walk(root):
        for name in names + files:
            os.utime(os.path.join(directory, name), (EPOCH, EPOCH), follow_symlinks=False)
    os.utime(root, (EPOCH, EPOCH))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python3 bytecode.py OUT", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True)
    app = os.environ.get("APP_WSGI", "")  # an app of the user's: its module's imports count too
    for module in [*MODULES, *([app.partition(":")[0]] if app else [])]:
        importlib.import_module(module)
    count = copy_caches(Path(sysconfig.get_paths()["stdlib"]), out)
    if not count:
        print("bytecode: importing the service wrote no bytecode for the standard library", file=sys.stderr)
        return 1
    set_times(out)
    print(f"bytecode: {count} files of the standard library's bytecode in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
