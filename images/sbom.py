"""The images' software bill of materials: CycloneDX 1.6 JSON, written at build time from the image's own files.

Standard library only: each Dockerfile runs this file in a build stage (on the image's own interpreter or the
build stage's), so the document describes the exact files shipped. It is also imported by `python -m images verify`.

- slim, distroless: every Debian package of the image's package database (dpkg's status file, or distroless's
  status.d), waitress (version from its .dist-info, the wheel's sha256 from requirements.lock) and every other
  Python package under /app/deps (name and version from its .dist-info, the hashes its lock allows) with their
  files, this project with every file under /app/service, and an app of the user's (APP_WSGI) with its folder
  under /app.
- micro: every regular file of the image, each nested under what it came from: a Debian package (name, version,
  and the MD5 the package's md5sums lists for it, checked against the file, or for bytecode, for the source it
  was compiled from), waitress, or this project (its code, the manifest, and the files the base image's recipe
  writes: /etc/passwd, /etc/group, /etc/nsswitch.conf). A file nothing claims stops the build.

Every file component carries the SHA-256 of the bytes shipped. The document leaves itself out (it cannot hold
its own hash) and has no time stamp, serial number or revision in it: the same files give the same bytes, so
the layer it is shipped in rebuilds to the same digest.

Usage: python3 sbom.py VARIANT ROOT LOCK OUT [--dpkg DIR]...
  ROOT: the image's file system; OUT: a directory the document is written under, at SBOM_PATH (its times
  are then set to SOURCE_DATE_EPOCH, 0 by default, OUT included);
  --dpkg: the package databases, ROOT/var/lib/dpkg by default. Micro has none of its own: the first is the
  trace stage's (the distroless base), each later one (the build stage's) lends its md5sums to a package
  the first lists at the same version and architecture without md5sums.
"""

import argparse
import hashlib
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

try:
    from .bytecode import set_times  # imported as images.sbom
except ImportError:
    from bytecode import set_times  # run as a script in a build stage, bytecode.py beside it

SBOM_PATH = "usr/share/doc/hello-api/sbom.json"  # inside every image, and under OUT
SPEC_VERSION = "1.6"
PROJECT = "hello-api"
PROJECT_VERSION = "1.0.0"
VARIANTS = ("slim", "distroless", "micro")
PROJECT_FILES = ("app/service/", "usr/share/hello-api/")
DEPENDENCY_FILES = "app/deps/"  # every Python package the lock installs, waitress among them
APP_FILES = "app/"  # beside deps/ and service/: the folder of an app the user built the image for
# Written by the base image's recipe (images/bases.py for the local base, distroless's for the real one), read
# by the C library; no package lists them.
BASE_RECIPE_FILES = ("etc/passwd", "etc/group", "etc/nsswitch.conf")
SKIPPED = ("proc/", "sys/", "dev/")


class SbomError(RuntimeError):
    """The image's files cannot be described: the message says which and why."""


@dataclass
class Package:
    name: str
    version: str
    architecture: str
    md5sums: dict[str, str] = field(default_factory=dict)  # path without the leading /: md5

    @property
    def purl(self) -> str:
        return f"pkg:deb/debian/{self.name}@{self.version}?arch={self.architecture}"


def stanzas(text: str) -> Iterator[dict[str, str]]:
    """The fields of each paragraph of a Debian control file, continuation lines joined by newlines."""
    for paragraph in re.split(r"\n\s*\n", text.strip()):
        fields: dict[str, str] = {}
        key = ""
        for line in paragraph.splitlines():
            if line[:1].isspace() and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if "Package" in fields:
            yield fields


def conffiles(fields: dict[str, str]) -> dict[str, str]:
    """dpkg keeps a configuration file's MD5 in the status file (Conffiles), not in md5sums."""
    sums = {}
    for line in fields.get("Conffiles", "").splitlines():
        name, _, digest = line.strip().partition(" ")
        if name.startswith("/") and re.fullmatch(r"[0-9a-f]{32}", digest.split()[0] if digest else ""):
            sums[name.lstrip("/")] = digest.split()[0]
    return sums


def read_md5sums(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    sums = {}
    for line in path.read_text(errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        if name:
            sums[name.lstrip("/")] = digest
    return sums


def debian_packages(dpkg: Path) -> dict[str, Package]:
    """The installed packages of a /var/lib/dpkg: dpkg's status and info/*.md5sums, or distroless's status.d
    (one control file per package, and NAME.md5sums where the image has them)."""
    packages: dict[str, Package] = {}

    def add(fields: dict[str, str], md5sums: dict[str, str]) -> None:
        name = fields["Package"]
        packages[name] = Package(name, fields.get("Version", ""), fields.get("Architecture", ""), md5sums)

    status = dpkg / "status"
    if status.is_file():
        for fields in stanzas(status.read_text(errors="replace")):
            if fields.get("Status", "").endswith(" installed"):
                info = dpkg / "info"
                sums = read_md5sums(info / f"{fields['Package']}:{fields.get('Architecture')}.md5sums")
                add(fields, {**(sums or read_md5sums(info / f"{fields['Package']}.md5sums")), **conffiles(fields)})
    status_d = dpkg / "status.d"
    if status_d.is_dir():
        for control in sorted(status_d.iterdir()):
            if control.suffix != ".md5sums":
                for fields in stanzas(control.read_text(errors="replace")):
                    add(fields, read_md5sums(status_d / f"{control.name}.md5sums"))
    return packages


def borrow_md5sums(packages: dict[str, Package], other: dict[str, Package]) -> None:
    """md5sums from another system's database, for the packages it has at exactly the same version."""
    for name, package in packages.items():
        twin = other.get(name)
        if not package.md5sums and twin and (twin.version, twin.architecture) == (package.version,
                                                                                   package.architecture):
            package.md5sums = twin.md5sums


def waitress_lock(lock: Path) -> tuple[str, str]:
    """(version, the wheel's sha256) from requirements.lock: its first hash is the wheel's (see its comment)."""
    version, digests = locked(lock).get("waitress", ("", []))
    if not version or not digests:
        raise SbomError(f"{lock} names no waitress==VERSION with a --hash=sha256: fix the lock file")
    return version, digests[0]


def locked(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """Every package the lock pins (its name normalised as PyPI does) -> (version, the sha256 hashes it allows)."""
    pinned: dict[str, tuple[str, list[str]]] = {}
    for requirement in re.sub(r"\\\n", " ", lock.read_text()).splitlines():
        found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", requirement)
        if found:
            pinned[normalised(found[1])] = (found[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", requirement))
    return pinned


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Distribution:
    """A Python package installed under /app/deps: its .dist-info's name, version and files."""
    name: str
    version: str
    files: list[str] = field(default_factory=list)


def metadata(dist_info: Path) -> dict[str, str]:
    """The header fields of a .dist-info's METADATA (Name, Version...)."""
    fields: dict[str, str] = {}
    for line in (dist_info / "METADATA").read_text(errors="replace").splitlines():
        if not line.strip():
            break
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def distributions(root: Path, files: list[str]) -> dict[str, Distribution]:
    """The files under /app/deps, each given to the package that installed it: by its .dist-info's RECORD, and
    bytecode by its source's. One package alone (hello-api's own lock: waitress) is given every file."""
    deps = root / DEPENDENCY_FILES
    found = {path.name: path for path in sorted(deps.glob("*.dist-info"))} if deps.is_dir() else {}
    installed = {}
    for dist_info in found.values():
        fields = metadata(dist_info) if (dist_info / "METADATA").is_file() else {}
        name, _, version = dist_info.name.removesuffix(".dist-info").rpartition("-")
        installed[dist_info.name] = Distribution(fields.get("Name", name), fields.get("Version", version))
    if len(installed) == 1:
        next(iter(installed.values())).files.extend(files)
        return installed
    owner: dict[str, str] = {}
    for key, dist_info in found.items():
        record = dist_info / "RECORD"
        for line in record.read_text(errors="replace").splitlines() if record.is_file() else []:
            # Scripts are recorded from the install's library folder (../../bin/flask); --target puts them in bin/.
            owner[os.path.normpath(DEPENDENCY_FILES + re.sub(r"^(\.\./)+", "", line.rsplit(",", 2)[0]))] = key
    unclaimed = []
    for path in files:
        key = owner.get(path) or owner.get(source_of(path)) or next(
            (k for k in found if path.startswith(f"{DEPENDENCY_FILES}{k}/")), None)
        if key is None:
            unclaimed.append(f"/{path}")
        else:
            installed[key].files.append(path)
    if unclaimed:
        raise SbomError(f"{len(unclaimed)} file(s) under /{DEPENDENCY_FILES} belong to no installed package's "
                        f"RECORD: {', '.join(unclaimed[:10])}")
    return installed


def source_of(path: str) -> str:
    """The source bytecode was compiled from: pkg/__pycache__/mod.cpython-313.pyc, or micro's sourceless
    pkg/mod.pyc, from pkg/mod.py."""
    directory, _, name = path.rpartition("/__pycache__/")
    if directory:
        return f"{directory}/{name.split('.', 1)[0]}.py"
    return path.removesuffix(".pyc") + ".py" if path.endswith(".pyc") else ""


def file_digests(path: Path) -> tuple[str, str]:
    sha256, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            sha256.update(chunk)
            md5.update(chunk)
    return sha256.hexdigest(), md5.hexdigest()


def regular_files(root: Path, under: str = "") -> list[str]:
    """Every regular file below ROOT/UNDER (paths relative to ROOT, sorted), symlinks not followed."""
    found = []
    for directory, names, files in os.walk(root / under):
        names.sort()
        relative = os.path.relpath(directory, root)
        prefix = "" if relative == "." else relative + "/"
        names[:] = [n for n in names if f"{prefix}{n}/" not in SKIPPED]
        for name in files:
            path = f"{prefix}{name}"
            if path != SBOM_PATH and os.path.isfile(root / path) and not os.path.islink(root / path):
                found.append(path)
    return sorted(found)


def file_component(root: Path, path: str, properties: dict[str, str] | None = None) -> dict:
    sha256, md5 = file_digests(root / path)
    component = {"type": "file", "bom-ref": f"file:/{path}", "name": f"/{path}",
                 "hashes": [{"alg": "SHA-256", "content": sha256}]}
    listed = (properties or {}).get("hello-api:md5sums")
    if listed == md5:
        component["hashes"].append({"alg": "MD5", "content": md5})
    if properties:
        component["properties"] = [{"name": k, "value": v} for k, v in sorted(properties.items())]
    return component


def package_component(package: Package, files: list[dict] | None = None) -> dict:
    component = {"type": "library", "bom-ref": package.purl, "name": package.name, "version": package.version,
                 "purl": package.purl, "supplier": {"name": "Debian"}}
    if files:
        component["components"] = files
    return component


def waitress_component(root: Path, lock: Path, files: list[str]) -> dict:
    version, wheel = waitress_lock(lock)
    installed = sorted(p.name for p in (root / DEPENDENCY_FILES).glob("waitress-*.dist-info"))
    if installed != [f"waitress-{version}.dist-info"]:
        raise SbomError(f"the image has {installed or 'no waitress .dist-info'} under /{DEPENDENCY_FILES} but "
                        f"requirements.lock pins waitress=={version}: rebuild the image from this checkout")
    purl = f"pkg:pypi/waitress@{version}"
    component = {"type": "library", "bom-ref": purl, "name": "waitress", "version": version, "purl": purl,
                 "licenses": [{"license": {"id": "ZPL-2.1"}}],
                 "hashes": [{"alg": "SHA-256", "content": wheel}],
                 "properties": [{"name": "hello-api:hash-of", "value": f"waitress-{version}-py3-none-any.whl "
                                 "(requirements.lock)"}]}
    if files:
        component["components"] = [file_component(root, path) for path in files]
    return component


def python_components(root: Path, lock: Path, files: list[str]) -> list[dict]:
    """waitress (its wheel's hash from the lock), then every other package under /app/deps by name, each with
    its files and the hashes the lock allows for it."""
    installed = distributions(root, files)
    waitress = [f for d in installed.values() if normalised(d.name) == "waitress" for f in d.files]
    components = [waitress_component(root, lock, waitress)]
    pinned = {name: hashes for name, (_, hashes) in locked(lock).items()}
    for distribution in sorted(installed.values(), key=lambda d: normalised(d.name)):
        name = normalised(distribution.name)
        if name == "waitress":
            continue
        if name not in pinned:
            raise SbomError(f"{distribution.name} {distribution.version} is installed under /{DEPENDENCY_FILES} "
                            f"but {lock.name} does not pin it: rebuild the image from its lock")
        purl = f"pkg:pypi/{name}@{distribution.version}"
        component = {"type": "library", "bom-ref": purl, "name": distribution.name, "version": distribution.version,
                     "purl": purl, "properties": [{"name": "hello-api:lock-hashes",
                                                   "value": " ".join(f"sha256:{h}" for h in pinned[name])}]}
        if distribution.files:
            component["components"] = [file_component(root, path) for path in sorted(distribution.files)]
        components.append(component)
    return components


def app_components(root: Path, files: list[str]) -> list[dict]:
    """The user's app (APP_WSGI): each folder or module under /app beside deps/ and service/, with its files."""
    apps: dict[str, list[str]] = {}
    for path in files:
        apps.setdefault(path.removeprefix(APP_FILES).split("/", 1)[0].removesuffix(".py"), []).append(path)
    return [{"type": "application", "bom-ref": f"pkg:generic/{name}", "name": name, "version": "unknown",
             "components": [file_component(root, path) for path in sorted(paths)]}
            for name, paths in sorted(apps.items())]


def is_app_file(path: str) -> bool:
    return path.startswith(APP_FILES) and not path.startswith((DEPENDENCY_FILES, *PROJECT_FILES))


def project_component(root: Path, files: list[str], properties: dict[str, dict[str, str]]) -> dict:
    component = {"type": "application", "bom-ref": f"pkg:generic/{PROJECT}@{PROJECT_VERSION}", "name": PROJECT,
                 "version": PROJECT_VERSION, "licenses": [{"license": {"id": "MIT"}}]}
    if files:
        component["components"] = [file_component(root, path, properties.get(path)) for path in files]
    return component


def resolved(path: str, base: Path) -> str:
    """PATH (relative) with every symlink on the way followed inside BASE, the system micro's files come from."""
    parts, seen = path.split("/"), 0
    index = 0
    while index < len(parts) and seen < 40:
        here = base.joinpath(*parts[:index + 1])
        if here.is_symlink():
            seen += 1
            target = os.readlink(here)
            start = [] if target.startswith("/") else parts[:index]
            parts = os.path.normpath("/".join([*start, target.lstrip("/"), *parts[index + 1:]])).split("/")
            index = 0
            continue
        index += 1
    return "/".join(parts)


def package_of(path: str, owners: dict[str, Package], base: Path) -> tuple[Package, dict[str, str]] | None:
    """The Debian package a micro file comes from, with what its md5sums says: the file itself, or for
    bytecode compiled where its source was (os.pyc), the source (followed through symlinks in BASE: Debian's
    sitecustomize.py is a link to /etc/python3.13)."""
    if path in owners:
        return owners[path], {"hello-api:md5sums": owners[path].md5sums[path]}
    source = resolved(path.removesuffix(".pyc") + ".py", base)
    if path.endswith(".pyc") and source in owners:
        return owners[source], {"hello-api:compiled-from": f"/{source}",
                                "hello-api:source-md5sums": owners[source].md5sums[source]}
    return None


def micro_components(root: Path, lock: Path, packages: dict[str, Package], base: Path) -> list[dict]:
    owners = {path: package for package in packages.values() for path in package.md5sums}
    files = regular_files(root)
    debian: dict[str, list[dict]] = {}
    dependencies, project, app, unclaimed = [], [], [], []
    project_properties: dict[str, dict[str, str]] = {}
    for path in files:
        if path.startswith(PROJECT_FILES):
            project.append(path)
        elif path.startswith(DEPENDENCY_FILES):
            dependencies.append(path)
        elif is_app_file(path):
            app.append(path)
        elif path in BASE_RECIPE_FILES:
            project.append(path)
            project_properties[path] = {"hello-api:origin": "the base image's recipe (images/bases.py)"}
        elif found := package_of(path, owners, base):
            package, properties = found
            component = file_component(root, path, properties)
            listed = properties.get("hello-api:md5sums")
            if listed and {"alg": "MD5", "content": listed} not in component["hashes"]:
                raise SbomError(f"/{path} differs from what {package.name} {package.version} lists for it "
                                f"(md5 {listed}): the base was changed after its packages were unpacked")
            debian.setdefault(package.name, []).append(component)
        else:
            unclaimed.append(f"/{path}")
    if unclaimed:
        raise SbomError(f"{len(unclaimed)} file(s) of the image come from no known package: "
                        f"{', '.join(unclaimed[:10])}: add their origin to images/sbom.py")
    return ([package_component(packages[name], debian[name]) for name in sorted(debian)]
            + python_components(root, lock, dependencies)
            + [project_component(root, project, project_properties)] + app_components(root, app))


def image_components(root: Path, lock: Path, packages: dict[str, Package]) -> list[dict]:
    if not packages:
        raise SbomError(f"{root} has no Debian package database (var/lib/dpkg/status or status.d)")
    dependencies = regular_files(root, DEPENDENCY_FILES)
    project = [p for prefix in PROJECT_FILES for p in regular_files(root, prefix)]
    app = [p for p in regular_files(root, APP_FILES) if is_app_file(p)] if (root / APP_FILES).is_dir() else []
    return ([package_component(packages[name]) for name in sorted(packages)]
            + python_components(root, lock, dependencies) + [project_component(root, project, {})]
            + app_components(root, app))


def document(variant: str, root: Path, lock: Path, dpkg: list[Path] | None = None, base: Path = Path("/")) -> dict:
    first, *others = dpkg or [root / "var/lib/dpkg"]
    packages = debian_packages(first)
    for other in others:
        borrow_md5sums(packages, debian_packages(other))
    components = (micro_components(root, lock, packages, base) if variant == "micro"
                  else image_components(root, lock, packages))
    image = {"type": "container", "bom-ref": f"{PROJECT}:{variant}", "name": f"{PROJECT}:{variant}",
             "version": PROJECT_VERSION,
             "properties": [{"name": "hello-api:variant", "value": variant},
                            {"name": "hello-api:files", "value": "every regular file" if variant == "micro" else
                             f"the files of {python_packages(components)} and of this project"
                             f"{app_named(components)}; Debian packages by name and version"}]}
    return {"$schema": f"http://cyclonedx.org/schema/bom-{SPEC_VERSION}.schema.json", "bomFormat": "CycloneDX",
            "specVersion": SPEC_VERSION, "version": 1,
            "metadata": {"tools": {"components": [{"type": "application", "name": "images/sbom.py",
                                                   "version": PROJECT_VERSION}]},
                         "component": image},
            "components": components,
            "dependencies": [{"ref": image["bom-ref"], "dependsOn": [c["bom-ref"] for c in components]}]}


def python_packages(components: list[dict]) -> str:
    """'waitress' for hello-api's own lock (as every document before APP_WSGI said), else how many."""
    count = sum(c.get("purl", "").startswith("pkg:pypi/") for c in components)
    return "waitress" if count == 1 else f"the {count} Python packages of the lock"


def app_named(components: list[dict]) -> str:
    apps = [c["name"] for c in components if c["type"] == "application" and c["name"] != PROJECT]
    return f", and of the app ({', '.join(apps)})" if apps else ""


def listed_files(sbom: dict) -> dict[str, str]:
    """Every file component of a document: path -> SHA-256."""
    files = {}
    pending = list(sbom.get("components", []))
    while pending:
        component = pending.pop()
        pending.extend(component.get("components", []))
        if component.get("type") == "file":
            files[component["name"]] = next(h["content"] for h in component["hashes"] if h["alg"] == "SHA-256")
    return files


def write(sbom: dict, out: Path) -> Path:
    target = out / SBOM_PATH
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(sbom, indent=1, sort_keys=True) + "\n")
    target.chmod(0o644)
    return target


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sbom.py", description=__doc__.split("\n", 1)[0])
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("root", type=Path)
    parser.add_argument("lock", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--dpkg", type=Path, action="append", help="a /var/lib/dpkg (default ROOT's); repeatable")
    parser.add_argument("--base", type=Path, default=Path("/"),
                        help="micro: the system its files were taken from (default /)")
    options = parser.parse_args(argv)
    try:
        sbom = document(options.variant, options.root, options.lock, options.dpkg, options.base)
    except SbomError as error:
        print(f"sbom: error: {error}", file=sys.stderr)
        return 1
    target = write(sbom, options.out)
    set_times(options.out)
    files = listed_files(sbom)
    print(f"sbom: {target}: {len(sbom['components'])} components, {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
