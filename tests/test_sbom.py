"""Verifiable images: the SBOM (images/sbom.py) on made-up file systems, `bench verify`'s checks, and under Docker
the images' own SBOMs, their labels, and micro rebuilt from a clean builder to the same layer.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import cyclonedx
import pytest
from conftest import IMAGES, ROOT, require_image
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from bench import bases, cli, images, verify
from bench.docker import docker, image_exists
from bench.images import VARIANTS
from images import sbom

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


def exported_from(root: Path, document: dict, tmp_path: Path) -> verify.Exported:
    files = {p: hashlib.sha256((root / p).read_bytes()).hexdigest() for p in sbom.regular_files(root)}
    return verify.Exported(files, document, root / "var/lib/dpkg", None)


def test_verify_reports_files_listed_but_absent_changed_or_unlisted(tmp_path):
    root, base, build = micro_system(tmp_path)
    document = micro_document(root, base, build)
    exported = exported_from(root, document, tmp_path)
    assert verify.sbom_problems(exported, "micro") == []
    del exported.files["usr/lib/libfoo.so.1"]
    exported.files["app/service/app.pyc"] = "0" * 64
    exported.files["usr/bin/sh"] = "1" * 64
    assert verify.sbom_problems(exported, "micro") == [
        "listed but absent: /usr/lib/libfoo.so.1",
        "listed with another SHA-256 than the image's: /app/service/app.pyc",
        "in the image but not listed: /usr/bin/sh"]


def test_verify_reports_packages_the_sbom_and_the_image_disagree_on(tmp_path):
    root = slim_system(tmp_path)
    document = sbom.document("slim", root, LOCK)
    write(root, "var/lib/dpkg/status", b"Package: libc6\nStatus: install ok installed\nVersion: 2.41-13\n"
                                       b"Architecture: amd64\n\nPackage: bash\nStatus: install ok installed\n"
                                       b"Version: 5.2\nArchitecture: amd64\n")
    assert verify.sbom_problems(exported_from(root, document, tmp_path), "slim") == [
        "Debian package bash 5.2 installed but not listed",
        "Debian package libc6: listed as 2.41-12, installed 2.41-13"]


def test_bench_verify_names_a_missing_image_and_exits_1_without_a_traceback(monkeypatch, capsys):
    monkeypatch.setattr(verify, "image_exists", lambda name: False)
    assert cli.main(["verify", "no-such-image:tag", "--no-rebuild"]) == 1
    err = capsys.readouterr().err
    assert "no image 'no-such-image:tag'" in err and "Traceback" not in err


# ---- the images, under Docker ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def exported_images(engine) -> dict[str, verify.Exported]:
    return {variant: verify.export(VARIANTS[require_image(variant)].tag) for variant in IMAGES}


@pytest.mark.docker
@pytest.mark.parametrize("variant", IMAGES)
def test_each_image_ships_an_sbom_that_is_valid_cyclonedx_and_matches_its_files(exported_images, variant):
    exported = exported_images[variant]
    assert exported.document is not None, f"no /{sbom.SBOM_PATH}"
    assert schema_errors(exported.document) == []
    assert verify.variant_of(exported.document) == variant
    assert verify.sbom_problems(exported, variant) == []


@pytest.mark.docker
def test_the_micro_sbom_accounts_for_every_regular_file_docker_export_shows(exported_images):
    exported = exported_images["micro"]
    listed = {path.lstrip("/") for path in sbom.listed_files(exported.document)}
    assert listed == set(exported.files)  # the SBOM itself and Docker's own files aside
    debian = [c for c in exported.document["components"] if c.get("purl", "").startswith("pkg:deb/")]
    assert {"libc6", "libpython3.13-minimal"} <= {c["name"] for c in debian}
    assert all(c["version"] for c in debian)


@pytest.mark.docker
@pytest.mark.parametrize("variant", IMAGES)
def test_each_image_names_the_commit_and_source_it_was_built_from(engine, variant):
    tag = VARIANTS[require_image(variant)].tag
    revision = verify.label(tag, "org.opencontainers.image.revision").removesuffix("-dirty")
    assert re.fullmatch(r"[0-9a-f]{40}", revision), revision
    known = subprocess.run(["git", "cat-file", "-e", f"{revision}^{{commit}}"], cwd=ROOT, capture_output=True)
    assert known.returncode == 0, f"{tag} names {revision}, which is no commit of this repository"
    assert verify.label(tag, "org.opencontainers.image.source")


@pytest.mark.docker
def test_bench_verify_fails_on_an_image_with_a_file_its_sbom_does_not_list(engine, tmp_path):
    tag = VARIANTS[require_image("micro")].tag
    (tmp_path / "extra").write_text("not in the SBOM\n")
    (tmp_path / "Dockerfile").write_text(f"FROM {tag}\nCOPY extra /usr/lib/extra\n")
    probe = f"{images.IMAGE}:verify-probe"
    docker("build", "-q", "-t", probe, str(tmp_path))
    try:
        result = subprocess.run([sys.executable, "-m", "bench", "verify", probe, "--no-rebuild"], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
    finally:
        docker("rmi", "-f", probe, check=False)
    assert result.returncode == 1
    assert "bench verify: SBOM: in the image but not listed: /usr/lib/extra" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.docker
def test_micro_built_twice_from_a_clean_builder_has_the_same_layer_whatever_its_labels_say(engine):
    """Two builds of micro, `docker builder prune -af` before each (the engine's whole build cache: about 10 s
    each here, pip's download included), the second with other revision and source labels."""
    require_image("micro")
    offline = image_exists(bases.SLIM_BASE) and image_exists(bases.DISTROLESS_BASE)
    tags = [f"{images.IMAGE}:micro-clean-{n}" for n in (1, 2)]
    try:
        for tag, revision in zip(tags, ("first", "second"), strict=True):
            docker("builder", "prune", "-af", timeout=600)
            images.build(VARIANTS["micro"], offline, tag=tag,
                         extra=["--build-arg", f"REVISION={revision}", "--build-arg", f"SOURCE=test-{revision}"])
        first, second = (verify.layers(tag) for tag in tags)
        labels = [verify.label(tag, "org.opencontainers.image.revision") for tag in tags]
    finally:
        for tag in tags:
            docker("rmi", "-f", tag, check=False)
    assert first == second
    assert first[1:] == [EMPTY_LAYER]  # what BuildKit 0.8 records for WORKDIR /app, which exists: no files
    assert labels == ["first", "second"]


@pytest.mark.docker
@pytest.mark.parametrize("variant", ["slim", "distroless"])
def test_syft_finds_every_debian_package_the_sbom_lists_and_no_other_package_database_entry(engine, variant):
    """The independent cross-check: what syft finds beyond the SBOM is only what the README explains."""
    lines = verify.syft_comparison(VARIANTS[require_image(variant)].tag)
    only_sbom = [line for line in lines if line.startswith("  only the SBOM: ")]
    assert only_sbom == ["  only the SBOM: hello-api 1.0.0 (application)"]  # the project has no .dist-info
    explained = {"slim": {"pip", "packaging", "wheel"},  # .dist-info inside Debian's python3-pip, -packaging, -wheel
                 "distroless": {"gcc-14", "libzstd", "util-linux", "python"}}[variant]  # ELF notes, classifier
    assert {line.split()[2] for line in lines if line.startswith("  only syft: ")} == explained
