"""The project's own hygiene: lint-clean code and Dockerfiles, a README that matches the code, and a product
(the service, its images and their tests) that does not depend on the bench."""

import ast
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


# The test modules whose subject is the bench: they may import it. Every other module under tests/ tests the
# service or its images and imports only service/, images/ and tests/ code.
BENCH_TEST_MODULES = {"test_bench.py", "test_bench_speed.py", "test_bench_workers.py", "test_bench_compare.py",
                      "test_bench_crowd.py", "test_bench_remote_engine.py", "test_bench_coldstart.py"}
# A product test that drives one bench study as its subject (the swarm rollout of the deploy files), through
# the bench module that deploys them.
BENCH_STUDIES_USED = {"test_deploy.py": {"bench.studies.rollout", "bench.deploy"}}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (`from bench import x`: bench.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def bench_imports(path: Path) -> set[str]:
    """The bench modules (and the bench's test modules) a file imports, less those it may."""
    imported = imported_modules(path)
    bench = {name for name in imported if name == "bench" or name.startswith("bench.")}
    # `from bench.studies import rollout` names bench.studies and bench.studies.rollout: keep the longest
    bench = {name for name in bench if not any(other.startswith(f"{name}.") for other in bench)}
    bench_tests = {name for name in imported if f"{name}.py" in BENCH_TEST_MODULES}
    return bench - BENCH_STUDIES_USED.get(path.name, set()) | bench_tests


def test_the_service_the_images_and_their_tests_import_nothing_from_the_bench():
    product = [*(ROOT / "service").rglob("*.py"), *(ROOT / "images").rglob("*.py"),
               *(path for path in (ROOT / "tests").glob("*.py") if path.name not in BENCH_TEST_MODULES)]
    found = {str(path.relative_to(ROOT)): sorted(names) for path in product if (names := bench_imports(path))}
    assert found == {}, ("these import the bench; use tests/support.py (or move a test of the bench itself to a "
                         f"tests/test_bench*.py module): {found}")
    assert all((ROOT / "tests" / name).is_file() for name in BENCH_TEST_MODULES | set(BENCH_STUDIES_USED))
