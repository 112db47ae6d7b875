"""The project's own hygiene: lint-clean code and Dockerfiles, and a README that matches the code."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from service.config import VARIABLES, Settings


def tool(name: str) -> str:
    # The interpreter's own bin first: the tools installed beside pytest by the test extra.
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return found


def test_ruff_finds_nothing():
    result = subprocess.run([tool("ruff"), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_finds_nothing_in_any_dockerfile():
    result = subprocess.run([tool("hadolint"), "Dockerfile", "Dockerfile.distroless", "Dockerfile.micro",
                             "deploy/swarm/haproxy/Dockerfile",
                             "bench/reference/Dockerfile"],  # the bench's reference servers
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def readme_configuration_rows() -> dict[str, str]:
    """`| APP_X | default | ... |` rows of the README's configuration table → {variable: default}."""
    text = (ROOT / "README.md").read_text()
    return {m[1]: m[2] for m in re.finditer(r"^\| `(APP_[A-Z_]+)` \| `([^`]*)` \|", text, re.MULTILINE)}


def test_the_readme_configuration_table_lists_every_variable_with_its_real_default():
    rows = readme_configuration_rows()
    defaults = Settings()
    assert set(rows) == set(VARIABLES)
    for variable, setting in VARIABLES.items():
        assert rows[variable] == str(getattr(defaults, setting.field)), variable
