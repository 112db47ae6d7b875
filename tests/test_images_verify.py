"""`python -m images verify`'s checks: the SBOM against made-up file systems, a missing image, and under Docker each
project image passing them, an image with a file its SBOM does not list failing them, and syft's independent
view of slim and distroless. The SBOM writer itself: tests/test_sbom.py.
"""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IMAGES, ROOT, require_image
from test_sbom import LOCK, micro_document, micro_system, slim_system, write

from images import cli, sbom, variants, verify
from images.docker import build, docker
from images.variants import VARIANTS


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


def test_images_verify_names_a_missing_image_and_exits_1_without_a_traceback(monkeypatch, capsys):
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
def test_each_image_passes_images_verify_sbom_checks(exported_images, variant):
    exported = exported_images[variant]
    assert exported.document is not None, f"no /{sbom.SBOM_PATH}"
    assert verify.variant_of(exported.document) == variant
    assert verify.sbom_problems(exported, variant) == []


@pytest.mark.docker
def test_images_verify_fails_on_an_image_with_a_file_its_sbom_does_not_list(engine, tmp_path):
    tag = VARIANTS[require_image("micro")].tag
    (tmp_path / "extra").write_text("not in the SBOM\n")
    (tmp_path / "Dockerfile").write_text(f"FROM {tag}\nCOPY extra /usr/lib/extra\n")
    probe = f"{variants.IMAGE}:verify-probe"
    build(tmp_path, "-q", "-t", probe)
    try:
        result = subprocess.run([sys.executable, "-m", "images", "verify", probe, "--no-rebuild"], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
    finally:
        docker("rmi", "-f", probe, check=False)
    assert result.returncode == 1
    assert "images verify: SBOM: in the image but not listed: /usr/lib/extra" in result.stderr
    assert "Traceback" not in result.stderr


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
