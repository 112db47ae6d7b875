"""Make both base images from Debian trixie packages, for machines that cannot pull from a registry.

- SLIM_BASE: what `python:3.13-slim` gives a Dockerfile: a minbase Debian trimmed the way
  `debian:trixie-slim` is (no docs, man pages or locales; no apt lists), plus Debian's python3.13 and pip,
  installable into like the official image (no EXTERNALLY-MANAGED marker, a `python` command), and, like
  it, without the standard library's bytecode.
- DISTROLESS_BASE: `gcr.io/distroless/python3-debian13:nonroot` rebuilt from its published recipe
  (GoogleContainerTools/distroless: static/, base/, cc/ and python3/ config.bzl and *.bzl): the same
  package list, layer by layer, unpacked with `dpkg-deb -x` as rules_distroless does (no maintainer
  scripts, so no shell and no package manager ever enters; docs and copyright files kept), a
  status.d entry per package for scanners, its passwd, group, home and /tmp, nsswitch.conf and
  os-release, the CA bundle, `python` and `python3` links to python3.13, an ld.so.cache made by the
  image's own ldconfig, LANG=C.UTF-8 and /usr/bin/python3.13 as the entrypoint. Like distroless, no
  bytecode for the standard library: Debian makes it in a maintainer script, which never runs here.

Needs root, debootstrap and dpkg-deb on the host (Debian/Ubuntu: apt-get install debootstrap).
"""

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from . import platforms
from .docker import build, image_exists, progress

SLIM_BASE = "hello-api-base/python:3.13-slim-trixie"
# "-2": rebuilt from upstream's recipe (issue 9); the first stand-in, 25 packages chosen here, was "debian13-nonroot".
DISTROLESS_BASE = "hello-api-base/distroless-python3:debian13-nonroot-2"
SUITE = "trixie"
MIRROR_VARIABLE = "DEBIAN_MIRROR"  # defaults to Debian's own redirector
DEFAULT_MIRROR = "http://deb.debian.org/debian"

SLIM_PACKAGES = ["python3.13", "python3-pip", "ca-certificates"]
# Upstream's layers for python3-debian13, each image built on the one before; package lists as in its
# static/, base/, cc/ and python3/ config.bzl (debian13 entries).
DISTROLESS_LAYERS = {
    "static": ["base-files", "netbase", "tzdata", "tzdata-legacy", "media-types"],
    "base": ["libc6", "libssl3t64", "libzstd1", "zlib1g"],
    "cc": ["libgomp1", "libstdc++6", "libgcc-s1", "gcc-14-base"],
    "python3": ["libbz2-1.0", "libdb5.3t64", "libexpat1", "liblzma5", "libsqlite3-0", "libuuid1", "libncursesw6",
                "libtinfo6", "zlib1g", "libcom-err2", "libcrypt1", "libc-bin", "libgssapi-krb5-2", "libk5crypto3",
                "libkeyutils1", "libkrb5-3", "libkrb5support0", "libnsl2", "libreadline8t64", "libtirpc3t64",
                "libffi8", "libpython3.13-minimal", "libpython3.13-stdlib", "python3.13-minimal",
                "python3.13-venv"],
}
# Not installed: upstream takes only the certificates out of it, as one bundle (common/ cacerts).
CA_PACKAGE = "ca-certificates"
DISTROLESS_PACKAGES = list(dict.fromkeys([*(p for layer in DISTROLESS_LAYERS.values() for p in layer), CA_PACKAGE]))
# What debian:*-slim leaves out (debuerreotype's slimify list).
SLIM_EXCLUDES = ["usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian",
                 "usr/share/linda", "var/cache/apt", "var/lib/apt/lists", "var/cache/debconf/templates.dat-old",
                 "var/log/apt", "var/log/dpkg.log", "var/log/bootstrap.log"]
DPKG_SLIM_CONFIG = """\
# Like debian:*-slim: packages installed later leave out documentation and translations too.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
"""

# Upstream's common/BUILD.bazel: these users and groups, these home directories.
PASSWD = """\
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
"""
GROUP = "root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n"
HOMES = (("root", 0o700, 0), ("home", 0o755, 0), ("home/nonroot", 0o700, 65532), ("tmp", 0o1777, 0))
# Upstream's static/nsswitch.conf, minus its comments.
NSSWITCH = """\
passwd:         compat
group:          compat
shadow:         compat
gshadow:        files

hosts:          files dns
networks:       files

protocols:      db files
services:       db files
ethers:         db files
rpc:            db files

netgroup:       nis
"""
OS_RELEASE = """\
PRETTY_NAME="Distroless"
NAME="Debian GNU/Linux"
ID="debian"
VERSION_ID="13"
VERSION="Debian GNU/Linux 13 (trixie)"
HOME_URL="https://github.com/GoogleContainerTools/distroless"
SUPPORT_URL="https://github.com/GoogleContainerTools/distroless/blob/master/README.md"
BUG_REPORT_URL="https://github.com/GoogleContainerTools/distroless/issues/new"
"""


def run(*command: str) -> None:
    progress("$ " + " ".join(command))
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def require_tools() -> None:
    missing = [tool for tool in ("debootstrap", "dpkg-deb", "chroot") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"python -m images bases needs {', '.join(missing)} on PATH: apt-get install debootstrap dpkg")
    if os.geteuid() != 0:
        raise SystemExit("python -m images bases needs root (debootstrap and chroot): run it with sudo or as root")


def slim_base(architecture: str) -> str:
    return platforms.tagged(SLIM_BASE, architecture)


def distroless_base(architecture: str) -> str:
    return platforms.tagged(DISTROLESS_BASE, architecture)


def bootstrap(root: Path, architecture: str) -> None:
    """A minbase trixie for `architecture` (a foreign one runs its second stage under QEMU: minutes longer)."""
    mirror = os.environ.get(MIRROR_VARIABLE, DEFAULT_MIRROR)
    run("debootstrap", f"--arch={architecture}", "--variant=minbase", f"--include={','.join(SLIM_PACKAGES)}",
        SUITE, str(root), mirror)


def download_debs(root: Path) -> list[Path]:
    """Fetch the distroless package set with the bootstrapped system's own apt (it knows trixie)."""
    debs = root / "tmp" / "distroless-debs"
    debs.mkdir(parents=True)
    debs.chmod(0o777)  # apt downloads as its unprivileged _apt user
    run("chroot", str(root), "apt-get", "update", "-qq")
    run("chroot", str(root), "sh", "-c", "cd /tmp/distroless-debs && apt-get download -qq "
        + " ".join(DISTROLESS_PACKAGES))
    return sorted(debs.glob("*.deb"))


def trim_like_debian_slim(root: Path) -> None:
    for relative in SLIM_EXCLUDES:
        target = root / relative
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
            target.mkdir()
        elif target.exists():
            target.unlink()
    (root / "etc/dpkg/dpkg.cfg.d/docker-slim").write_text(DPKG_SLIM_CONFIG)
    # The official python images delete the standard library's bytecode (about 30 MB); so does this one.
    for cache in root.glob("usr/lib/python3*/**/__pycache__"):
        shutil.rmtree(cache)
    # The official python image is pip-installable system-wide; Debian's marker would refuse that.
    for marker in root.glob("usr/lib/python3*/EXTERNALLY-MANAGED"):
        marker.unlink()
    (root / "usr/local/bin/python").symlink_to("/usr/bin/python3")


def unpack(root: Path, debs: list[Path]) -> None:
    """Each package's files, as `dpkg-deb -x` gives them, and a status.d entry naming it (what
    rules_distroless writes, so scanners can list the packages without a dpkg database)."""
    status = root / "var/lib/dpkg/status.d"
    status.mkdir(parents=True)
    for deb in debs:
        package = deb.name.split("_", 1)[0]
        if package == CA_PACKAGE:
            continue
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True).stdout
        (status / package).write_text(control)


def bundle_certificates(root: Path, debs: list[Path]) -> None:
    """/etc/ssl/certs/ca-certificates.crt from the ca-certificates package, which is not installed."""
    with tempfile.TemporaryDirectory() as unpacked:
        deb = next(d for d in debs if d.name.startswith(f"{CA_PACKAGE}_"))
        subprocess.run(["dpkg-deb", "-x", str(deb), unpacked], check=True)
        certificates = sorted(Path(unpacked, "usr/share/ca-certificates").rglob("*.crt"))
        (root / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
        (root / "etc/ssl/certs/ca-certificates.crt").write_bytes(b"".join(c.read_bytes() for c in certificates))


def link_like(root: Path, layout: Path) -> None:
    """`root`'s top-level links (and the folders they point to) as `layout` has them: the bootstrapped Debian of
    the same architecture, whose merged /usr has /lib64 where the architecture has one (amd64; arm64 has none)."""
    for link in sorted(entry for entry in layout.iterdir() if entry.is_symlink()):
        target = os.readlink(link)
        (root / target).mkdir(parents=True, exist_ok=True)
        (root / link.name).symlink_to(target)


def assemble_distroless(root: Path, debs: list[Path], layout: Path) -> None:
    """The distroless root from `debs`, laid out like `layout` (link_like)."""
    link_like(root, layout)
    unpack(root, debs)
    bundle_certificates(root, debs)
    for name in ("python", "python3"):
        (root / "usr/bin" / name).symlink_to("/usr/bin/python3.13")
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    (root / "etc/nsswitch.conf").write_text(NSSWITCH)
    (root / "etc/os-release").unlink(missing_ok=True)  # base-files' link to Debian's
    (root / "etc/os-release").write_text(OS_RELEASE)
    for directory, mode, owner in HOMES:
        path = root / directory
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, owner, owner)
        path.chmod(mode)
    # Upstream ships the cache its image's own ldconfig makes; so does this (no shell needed to run it).
    run("chroot", str(root), "/sbin/ldconfig")


def import_root(root: Path, name: str, changes: list[str], architecture: str) -> None:
    """A directory as an image for `architecture` (one layer of files, and the empty one BuildKit records for
    a WORKDIR), numeric owners kept, with the Dockerfile instructions `changes`: built `FROM scratch` with
    BuildKit, since `docker import` on a 20.10 engine ignores --platform and would mark an arm64 root amd64."""
    with tempfile.TemporaryDirectory(prefix="hello-api-import-") as context:
        with tarfile.open(Path(context) / "root.tar", "w") as tar:
            for entry in sorted(root.iterdir()):
                tar.add(entry, arcname=entry.name)
        (Path(context) / "Dockerfile").write_text("\n".join(["FROM scratch", "ADD root.tar /", *changes]) + "\n")
        build(context, "--progress=plain", "-t", name, *platforms.platform_option(architecture))


def make_bases(rebuild: bool = False, architecture: str = platforms.native()) -> None:
    """Make the bases for `architecture` that are missing (both with `rebuild`); an existing one is never
    replaced otherwise."""
    slim_name, distroless_name = slim_base(architecture), distroless_base(architecture)
    missing = [name for name in (slim_name, distroless_name) if rebuild or not image_exists(name)]
    if not missing:
        progress(f"bases already built: {slim_name}, {distroless_name} (--rebuild to make them again)")
        return
    require_tools()
    platforms.require_emulation(architecture)  # debootstrap's second stage and ldconfig run its binaries
    with tempfile.TemporaryDirectory(prefix="hello-api-bases-") as work:
        slim, distroless = Path(work) / "slim", Path(work) / "distroless"
        bootstrap(slim, architecture)  # the distroless packages are downloaded with its apt: needed either way
        debs = download_debs(slim)
        common = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8"]
        if distroless_name in missing:
            assemble_distroless(distroless, debs, layout=slim)
            import_root(distroless, distroless_name, [
                *common, "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "USER 65532",
                "WORKDIR /home/nonroot", 'ENTRYPOINT ["/usr/bin/python3.13"]'], architecture)
        if slim_name in missing:
            shutil.rmtree(slim / "tmp" / "distroless-debs")
            trim_like_debian_slim(slim)
            import_root(slim, slim_name, [*common, 'CMD ["python3"]'], architecture)


def build_args(architecture: str = platforms.native()) -> list[str]:
    return ["--build-arg", f"PYTHON_IMAGE={slim_base(architecture)}",
            "--build-arg", f"DISTROLESS_IMAGE={distroless_base(architecture)}"]
