"""Make both base images from Debian trixie packages, for machines that cannot pull from a registry.

- SLIM_BASE: what `python:3.13-slim` gives a Dockerfile: a minbase Debian trimmed the way
  `debian:trixie-slim` is (no docs, man pages or locales; no apt lists), plus Debian's python3.13 and pip,
  installable into like the official image (no EXTERNALLY-MANAGED marker, a `python` command), and, like
  it, without the standard library's bytecode.
- DISTROLESS_BASE: what `gcr.io/distroless/python3-debian13:nonroot` gives: .deb payloads unpacked with
  `dpkg-deb -x` (no maintainer scripts, so no shell and no package manager ever enters), a CA bundle,
  tzdata, users root and nonroot (65532), and /usr/bin/python3.13 as the entrypoint. Like distroless,
  no bytecode for the standard library: Debian makes it in a maintainer script, which never runs here.

Needs root, debootstrap and dpkg-deb on the host (Debian/Ubuntu: apt-get install debootstrap).
"""

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from .docker import docker, image_exists, progress

SLIM_BASE = "hello-api-base/python:3.13-slim-trixie"
DISTROLESS_BASE = "hello-api-base/distroless-python3:debian13-nonroot"
SUITE = "trixie"
MIRROR_VARIABLE = "DEBIAN_MIRROR"  # defaults to Debian's own redirector
DEFAULT_MIRROR = "http://deb.debian.org/debian"

SLIM_PACKAGES = ["python3.13", "python3-pip", "ca-certificates"]
# Chosen like distroless's python3 image: the interpreter, its shared libraries, and the base files.
DISTROLESS_PACKAGES = [
    "libc6", "libgcc-s1", "gcc-14-base", "libssl3t64", "zlib1g", "libzstd1", "liblzma5", "libbz2-1.0",
    "libexpat1", "libffi8", "libsqlite3-0", "libuuid1", "libncursesw6", "libtinfo6", "libreadline8t64",
    "readline-common", "libdb5.3t64", "media-types", "netbase", "tzdata", "ca-certificates", "base-files",
    "python3.13-minimal", "libpython3.13-minimal", "libpython3.13-stdlib",
]
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

PASSWD = """\
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
"""
GROUP = "root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"


def run(*command: str) -> None:
    progress("$ " + " ".join(command))
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def require_tools() -> None:
    missing = [tool for tool in ("debootstrap", "dpkg-deb", "chroot") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"bench bases needs {', '.join(missing)} on PATH: apt-get install debootstrap dpkg")
    if os.geteuid() != 0:
        raise SystemExit("bench bases needs root (debootstrap and chroot): run it with sudo or as root")


def bootstrap(root: Path) -> None:
    mirror = os.environ.get(MIRROR_VARIABLE, DEFAULT_MIRROR)
    run("debootstrap", "--variant=minbase", f"--include={','.join(SLIM_PACKAGES)}", SUITE, str(root), mirror)


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


def assemble_distroless(root: Path, debs: list[Path]) -> None:
    for relative in ("usr/bin", "usr/lib", "usr/lib64", "usr/sbin"):
        (root / relative).mkdir(parents=True, exist_ok=True)
    for link in ("bin", "lib", "lib64", "sbin"):  # merged /usr, as Debian trixie lays it out
        (root / link).symlink_to(f"usr/{link}")
    for deb in debs:
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    for relative in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale",
                     "usr/share/lintian", "usr/share/common-licenses"):
        shutil.rmtree(root / relative, ignore_errors=True)
    (root / "usr/bin/python3").symlink_to("python3.13")
    # update-ca-certificates would make this bundle; maintainer scripts never run here.
    certificates = sorted((root / "usr/share/ca-certificates").rglob("*.crt"))
    (root / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
    (root / "etc/ssl/certs/ca-certificates.crt").write_bytes(b"".join(c.read_bytes() for c in certificates))
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    for directory, mode, owner in (("tmp", 0o1777, 0), ("root", 0o700, 0), ("home/nonroot", 0o700, 65532)):
        path = root / directory
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, owner, owner)
        path.chmod(mode)


def import_root(root: Path, name: str, changes: list[str]) -> None:
    """`docker import` a directory as a one-layer image, with numeric owners kept."""
    with tempfile.NamedTemporaryFile(suffix=".tar") as archive:
        with tarfile.open(archive.name, "w") as tar:
            for entry in sorted(root.iterdir()):
                tar.add(entry, arcname=entry.name)
        args = ["import"]
        for change in changes:
            args += ["--change", change]
        docker(*args, archive.name, name)


def make_bases(rebuild: bool = False) -> None:
    if not rebuild and image_exists(SLIM_BASE) and image_exists(DISTROLESS_BASE):
        progress(f"bases already built: {SLIM_BASE}, {DISTROLESS_BASE} (--rebuild to make them again)")
        return
    require_tools()
    with tempfile.TemporaryDirectory(prefix="hello-api-bases-") as work:
        slim, distroless = Path(work) / "slim", Path(work) / "distroless"
        bootstrap(slim)
        debs = download_debs(slim)
        assemble_distroless(distroless, debs)
        shutil.rmtree(slim / "tmp" / "distroless-debs")
        trim_like_debian_slim(slim)
        common = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8"]
        import_root(slim, SLIM_BASE, [*common, 'CMD ["python3"]'])
        import_root(distroless, DISTROLESS_BASE, [
            *common, "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "USER 65532",
            "WORKDIR /home/nonroot", 'ENTRYPOINT ["/usr/bin/python3.13"]'])


def build_args() -> list[str]:
    return ["--build-arg", f"PYTHON_IMAGE={SLIM_BASE}", "--build-arg", f"DISTROLESS_IMAGE={DISTROLESS_BASE}"]
