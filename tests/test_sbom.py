"""The images' SBOMs: the writer (images/sbom.py) on made-up file systems, and under Docker each image's own
SBOM against the CycloneDX schema and its files, the labels naming its commit, and micro rebuilt from a clean
builder to the same layer. `python -m images verify`'s checks of the same documents: tests/test_images_verify.py.
"""

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import cyclonedx
import pytest
from conftest import EMULATED, IMAGES, ROOT, emulated_params, require_image
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from support import IMAGE, build_variant, docker, image_tag, inspect_image

from images import sbom, verify

SCHEMAS = Path(cyclonedx.__file__).parent / "schema" / "_res"  # cyclonedx-python-lib's copies of the official ones
LOCK = ROOT / "requirements.lock"
WAITRESS = sbom.waitress_lock(LOCK)[0]
EMPTY_LAYER = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"  # an empty tar's digest


def cyclonedx_validator() -> Draft7Validator:
    """CycloneDX 1.6's JSON schema, with the SPDX licence list and JSF schemas it refers to."""
    registry = Registry().with_resources(
        (f"http://cyclonedx.org/schema/{path.name}",
         Resource.from_contents(json.loads(path.read_text()), default_specification=DRAFT7))
        for path in SCHEMAS.glob("*.schema.json"))
    schema = json.loads((SCHEMAS / f"bom-{sbom.SPEC_VERSION}.SNAPSHOT.schema.json").read_text())
    return Draft7Validator(schema, registry=registry, format_checker=Draft7Validator.FORMAT_CHECKER)


def schema_errors(document: dict) -> list[str]:
    return [f"{error.json_path}: {error.message[:200]}" for error in cyclonedx_validator().iter_errors(document)]


def write(root: Path, path: str, data: bytes) -> str:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_bytes(data)
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


LIBFOO = b"\x7fELF libfoo"
OS_SOURCE = b"# os.py\n"


def micro_system(tmp_path: Path, build_version: str = "1.0-1") -> tuple[Path, Path, Path]:
    """(micro root, base root, build stage's dpkg): a distroless-like base whose status.d has no md5sums, a
    Debian build stage that has them for libfoo at BUILD_VERSION, and a micro root of each kind of file."""
    base, root, build = tmp_path / "base", tmp_path / "micro", tmp_path / "build-dpkg"
    write(base, "var/lib/dpkg/status.d/libfoo", b"Package: libfoo\nVersion: 1.0-1\nArchitecture: amd64\n")
    write(base, "usr/lib/python3.13/os.py", OS_SOURCE)
    (base / "etc/python3.13").mkdir(parents=True)
    site = write(base, "etc/python3.13/sitecustomize.py", b"# site\n")
    (base / "usr/lib/python3.13/sitecustomize.py").symlink_to("/etc/python3.13/sitecustomize.py")
    sums = (f"{hashlib.md5(LIBFOO, usedforsecurity=False).hexdigest()}  usr/lib/libfoo.so.1\n"
            f"{hashlib.md5(OS_SOURCE, usedforsecurity=False).hexdigest()}  usr/lib/python3.13/os.py\n")
    write(build, "info/libfoo:amd64.md5sums", sums.encode())
    write(build, "status", f"Package: libfoo\nStatus: install ok installed\nVersion: {build_version}\n"
                           f"Architecture: amd64\nConffiles:\n /etc/python3.13/sitecustomize.py {site}\n".encode())
    write(root, "usr/lib/libfoo.so.1", LIBFOO)
    write(root, "usr/lib/python3.13/os.pyc", b"bytecode of os")
    write(root, "usr/lib/python3.13/sitecustomize.pyc", b"bytecode of sitecustomize")
    write(root, "app/service/app.pyc", b"the service")
    write(root, "usr/share/hello-api/manifest.tsv", b"# manifest\n")
    write(root, f"app/deps/waitress-{WAITRESS}.dist-info/METADATA", b"Name: waitress\n")
    write(root, "app/deps/waitress/__init__.pyc", b"waitress")
    write(root, "etc/passwd", b"nonroot:x:65532:65532::/home/nonroot:/sbin/nologin\n")
    return root, base, build


def micro_document(root: Path, base: Path, build: Path) -> dict:
    return sbom.document("micro", root, LOCK, [base / "var/lib/dpkg", build], base)


def owners(document: dict) -> dict[str, str]:
    """File path -> the name of the component it is nested under."""
    return {file["name"]: component["name"] for component in document["components"]
            for file in component.get("components", [])}


def test_every_micro_file_is_attributed_to_its_debian_package_waitress_or_the_project(tmp_path):
    document = micro_document(*micro_system(tmp_path))
    assert owners(document) == {
        "/usr/lib/libfoo.so.1": "libfoo", "/usr/lib/python3.13/os.pyc": "libfoo",
        "/usr/lib/python3.13/sitecustomize.pyc": "libfoo",
        "/app/service/app.pyc": "hello-api", "/usr/share/hello-api/manifest.tsv": "hello-api",
        "/etc/passwd": "hello-api",
        f"/app/deps/waitress-{WAITRESS}.dist-info/METADATA": "waitress", "/app/deps/waitress/__init__.pyc": "waitress"}
    libfoo = next(c for c in document["components"] if c["name"] == "libfoo")
    assert libfoo["version"] == "1.0-1" and libfoo["purl"] == "pkg:deb/debian/libfoo@1.0-1?arch=amd64"
    files = {f["name"]: f for f in libfoo["components"]}
    md5 = hashlib.md5(LIBFOO, usedforsecurity=False).hexdigest()
    assert {"alg": "MD5", "content": md5} in files["/usr/lib/libfoo.so.1"]["hashes"]
    assert {"alg": "SHA-256", "content": hashlib.sha256(LIBFOO).hexdigest()} in files["/usr/lib/libfoo.so.1"]["hashes"]
    compiled = {p["name"]: p["value"] for p in files["/usr/lib/python3.13/os.pyc"]["properties"]}
    assert compiled == {"hello-api:compiled-from": "/usr/lib/python3.13/os.py",
                        "hello-api:source-md5sums": hashlib.md5(OS_SOURCE, usedforsecurity=False).hexdigest()}
    waitress = next(c for c in document["components"] if c["name"] == "waitress")
    assert waitress["hashes"] == [{"alg": "SHA-256", "content": sbom.waitress_lock(LOCK)[1]}]
    assert schema_errors(document) == []


def test_a_file_no_package_claims_stops_the_sbom_with_its_path(tmp_path, capsys):
    root, base, build = micro_system(tmp_path)
    write(root, "usr/lib/mystery.so", b"?")
    with pytest.raises(sbom.SbomError, match=re.escape("/usr/lib/mystery.so")):
        micro_document(root, base, build)
    code = sbom.main(["micro", str(root), str(LOCK), str(tmp_path / "out"), "--dpkg", str(base / "var/lib/dpkg"),
                      "--dpkg", str(build), "--base", str(base)])
    assert code == 1
    assert capsys.readouterr().err.startswith("sbom: error: 1 file(s) of the image come from no known package")


def test_a_file_changed_after_unpacking_is_not_passed_off_as_the_packages(tmp_path):
    root, base, build = micro_system(tmp_path)
    write(root, "usr/lib/libfoo.so.1", b"\x7fELF patched")
    with pytest.raises(sbom.SbomError, match=re.escape("differs from what libfoo 1.0-1 lists")):
        micro_document(root, base, build)


def test_md5sums_are_borrowed_only_from_the_same_package_version(tmp_path):
    root, base, build = micro_system(tmp_path, build_version="1.0-2")
    with pytest.raises(sbom.SbomError, match=re.escape("/usr/lib/libfoo.so.1")):
        micro_document(root, base, build)


def test_the_same_files_give_the_same_bytes_with_every_time_at_the_epoch(tmp_path):
    root, base, build = micro_system(tmp_path)
    arguments = ["micro", str(root), str(LOCK), str(root), "--dpkg", str(base / "var/lib/dpkg"), "--dpkg",
                 str(build), "--base", str(base)]
    assert sbom.main(arguments) == 0
    first = (root / sbom.SBOM_PATH).read_bytes()
    assert sbom.main(arguments) == 0
    assert (root / sbom.SBOM_PATH).read_bytes() == first
    times = {os.lstat(os.path.join(d, n)).st_mtime for d, names, files in os.walk(root) for n in names + files}
    assert times == {0}
    assert f"/{sbom.SBOM_PATH}" not in sbom.listed_files(json.loads(first))  # it cannot hold its own hash


def slim_system(tmp_path: Path) -> Path:
    root = tmp_path / "slim"
    write(root, "var/lib/dpkg/status", b"Package: libc6\nStatus: install ok installed\nVersion: 2.41-12\n"
                                       b"Architecture: amd64\n\nPackage: gone\nStatus: deinstall ok config-files\n"
                                       b"Version: 1\nArchitecture: all\n")
    write(root, "app/service/app.py", b"# the service\n")
    write(root, f"app/deps/waitress-{WAITRESS}.dist-info/METADATA", b"Name: waitress\n")
    write(root, "usr/lib/libc.so.6", b"\x7fELF libc")
    return root


def test_the_slim_sbom_lists_installed_packages_and_every_file_under_app(tmp_path):
    document = sbom.document("slim", slim_system(tmp_path), LOCK)
    assert [c["name"] for c in document["components"]] == ["libc6", "waitress", "hello-api"]
    assert set(sbom.listed_files(document)) == {"/app/service/app.py",
                                                f"/app/deps/waitress-{WAITRESS}.dist-info/METADATA"}
    assert schema_errors(document) == []


def test_a_waitress_other_than_the_locked_one_stops_the_sbom(tmp_path):
    root = slim_system(tmp_path)
    os.rename(root / f"app/deps/waitress-{WAITRESS}.dist-info", root / "app/deps/waitress-0.1.dist-info")
    with pytest.raises(sbom.SbomError, match=re.escape(f"requirements.lock pins waitress=={WAITRESS}")):
        sbom.document("slim", root, LOCK)


# ---- the images, under Docker ------------------------------------------------------------------------

def shipped(tag: str) -> tuple[dict[str, str], dict | None]:
    """(every regular file of the image, path without /: SHA-256, Docker's own files and the SBOM aside; the
    SBOM), from `docker export`, as `python -m images verify` reads them."""
    image = verify.export(tag)
    image.work.cleanup()
    return image.files, image.document


@pytest.fixture(scope="module")
def shipped_images(engine) -> dict[str, tuple[dict[str, str], dict | None]]:
    return {variant: shipped(image_tag(require_image(variant))) for variant in IMAGES}


def label(tag: str, name: str) -> str:
    return (inspect_image(tag, ".Config.Labels") or {}).get(name, "")


@pytest.mark.docker
@pytest.mark.parametrize("variant", IMAGES)
def test_each_image_ships_an_sbom_that_is_valid_cyclonedx_naming_its_variant(shipped_images, variant):
    _, document = shipped_images[variant]
    assert document is not None, f"no /{sbom.SBOM_PATH}"
    assert schema_errors(document) == []
    properties = {p["name"]: p["value"] for p in document["metadata"]["component"]["properties"]}
    assert properties["hello-api:variant"] == variant


@pytest.mark.docker
@pytest.mark.parametrize("variant", emulated_params(EMULATED))
def test_an_image_for_another_architecture_ships_its_own_sbom_of_that_architectures_packages(engine, variant):
    files, document = shipped(image_tag(require_image(variant)))
    assert document is not None and schema_errors(document) == []
    properties = {p["name"]: p["value"] for p in document["metadata"]["component"]["properties"]}
    name, _, architecture = variant.rpartition("-")
    assert properties["hello-api:variant"] == name
    debian = [c["purl"] for c in document["components"] if c.get("purl", "").startswith("pkg:deb/")]
    assert debian and all(purl.endswith((f"?arch={architecture}", "?arch=all")) for purl in debian)
    if name == "micro":
        assert {path.lstrip("/"): digest for path, digest in sbom.listed_files(document).items()} == files


@pytest.mark.docker
def test_the_micro_sbom_lists_every_regular_file_docker_export_shows_with_its_digest(shipped_images):
    files, document = shipped_images["micro"]
    listed = {path.lstrip("/"): digest for path, digest in sbom.listed_files(document).items()}
    assert listed == files  # the SBOM itself and Docker's own files aside
    debian = [c for c in document["components"] if c.get("purl", "").startswith("pkg:deb/")]
    assert {"libc6", "libpython3.13-minimal"} <= {c["name"] for c in debian}
    assert all(c["version"] for c in debian)


@pytest.mark.docker
@pytest.mark.parametrize("variant", IMAGES)
def test_each_image_names_the_commit_and_source_it_was_built_from(engine, variant):
    tag = image_tag(require_image(variant))
    revision = label(tag, "org.opencontainers.image.revision").removesuffix("-dirty")
    assert re.fullmatch(r"[0-9a-f]{40}", revision), revision
    known = subprocess.run(["git", "cat-file", "-e", f"{revision}^{{commit}}"], cwd=ROOT, capture_output=True)
    assert known.returncode == 0, f"{tag} names {revision}, which is no commit of this repository"
    assert label(tag, "org.opencontainers.image.source")


@pytest.mark.docker
def test_micro_built_twice_from_a_clean_builder_has_the_same_layer_whatever_its_labels_say(engine):
    """Two builds of micro, `docker builder prune -af` before each (the engine's whole build cache: about 10 s
    each here, pip's download included), the second with other revision and source labels."""
    require_image("micro")
    tags = [f"{IMAGE}:micro-clean-{n}" for n in (1, 2)]
    try:
        for tag, revision in zip(tags, ("first", "second"), strict=True):
            docker("builder", "prune", "-af", timeout=600)
            build_variant("micro", tag=tag, extra=("--build-arg", f"REVISION={revision}",
                                           "--build-arg", f"SOURCE=test-{revision}"))
        first, second = (inspect_image(tag, ".RootFS.Layers") for tag in tags)
        labels = [label(tag, "org.opencontainers.image.revision") for tag in tags]
    finally:
        for tag in tags:
            docker("rmi", "-f", tag, check=False)
    assert first == second
    assert first[1:] == [EMPTY_LAYER]  # what BuildKit 0.8 records for WORKDIR /app, which exists: no files
    assert labels == ["first", "second"]
