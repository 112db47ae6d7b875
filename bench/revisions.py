"""The service's source at a git revision: `service/` unpacked into a temporary tree, and the commit's
one-line description (what `bench commits` and `bench profile` serve and name)."""

import subprocess
from pathlib import Path

from images.docker import ROOT


def source_tree(revision: str, into: Path) -> Path:
    """`service/` as it was at `revision`, unpacked under `into`."""
    tree = into / revision.replace("/", "_")
    tree.mkdir()
    archive = subprocess.run(["git", "archive", revision, "service"], cwd=ROOT, capture_output=True, check=False)
    if archive.returncode != 0:
        raise RuntimeError(f"git archive {revision} service failed: {archive.stderr.decode().strip()}; name a "
                           "commit of this repository that has service/")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree


def described(revision: str) -> str:
    return subprocess.run(["git", "log", "-1", "--format=%h %s", revision], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()[:100]
