"""`python -m bench compare`: the image study for images this project did not write.

The end-to-end test builds six small images from the local Python base (the tutorial-style http.server
with and without a HEALTHCHECK, one whose load URL answers only 404, one that exits at once, one that
listens on another port, one that listens and never answers), names one that does not exist, and builds
two `--build` entries from contexts of their own (one builds, one fails), and asserts that every column
of the report is filled or explained."""

import json
import shutil
import subprocess
import sys
import uuid
from argparse import Namespace
from pathlib import Path

import pytest
from conftest import EMULATED, ROOT, require_image, unavailable

from bench.studies import STUDY
from bench.studies.compare import CompareError, code_file, dependency_file, parse_build, parse_image, subjects_from
from images import bases
from images.docker import build, docker, engine_architecture, image_exists
from images.variants import IMAGE, image_tag

SERVED = 'WORKDIR /srv\nRUN echo ok > health && echo hi > hello\nCMD ["python3", "-m", "http.server", "8000"]\n'
PROBE = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
FOREIGN = {  # label -> Dockerfile after FROM
    "healthy": SERVED + f'HEALTHCHECK --interval=2s CMD ["python3", "-c", "{PROBE}"]\n',
    "plain": SERVED,
    "notfound": 'WORKDIR /srv\nRUN echo ok > health\nCMD ["python3", "-m", "http.server", "8000"]\n',
    "exits": 'CMD ["python3", "-c", "print(\'bye\'); raise SystemExit(3)"]\n',
    "elsewhere": SERVED.replace('"8000"', '"9000"'),
    "silent": 'CMD ["python3", "-c", "import socket, time; s = socket.create_server((\'\', 8000)); time.sleep(600)"]\n',
}
APP = """import http.server


class Answer(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("", 8000), Answer).serve_forever()
"""
# Dependencies first, then the code: a code edit must leave the install step cached.
BUILT = ('WORKDIR /app\nCOPY requirements.txt .\nRUN python3 -m pip install --no-index -r requirements.txt\n'
         'COPY app.py .\nCMD ["python3", "app.py"]\n')


def options(*images: str, build: tuple[str, ...] = (), **overrides) -> Namespace:
    defaults = {"port": 5000, "ready": "/health", "url": "/", "env": [], "baseline": None, "ready_seconds": 30.0}
    return Namespace(images=list(images), build=list(build), **{**defaults, **overrides})


def test_an_image_is_labelled_by_itself_or_by_the_label_before_the_equals_sign():
    assert parse_image("myapp:slim") == ("myapp:slim", "myapp:slim")
    assert parse_image("small=registry.example/myapp:distroless") == ("small", "registry.example/myapp:distroless")
    with pytest.raises(CompareError, match="LABEL=IMAGE"):
        parse_image("two words=myapp")


def test_the_baseline_comes_first_and_a_wrong_one_is_named_with_the_labels_there_are():
    subjects, base = subjects_from(options("a=one", "b=two", baseline="b"))
    assert [t.label for t in subjects] == ["b", "a"] and base == "b"
    with pytest.raises(CompareError, match="not one of the images' labels: a, b"):
        subjects_from(options("a=one", "b=two", baseline="c"))
    with pytest.raises(CompareError, match="name more than one image"):
        subjects_from(options("a=one", "a=two"))
    with pytest.raises(CompareError, match="name at least one image"):
        subjects_from(options())
    with pytest.raises(CompareError, match="KEY=VALUE"):
        subjects_from(options("a=one", env=["NOVALUE"]))
    with pytest.raises(CompareError, match="positive"):
        subjects_from(options("a=one", ready_seconds=0))


def test_a_build_entry_names_a_dockerfile_that_exists_and_its_context_defaults_to_its_folder(tmp_path):
    (tmp_path / "Dockerfile.small").write_text("FROM scratch\n")
    label, dockerfile, context = parse_build(f"small={tmp_path / 'Dockerfile.small'}")
    assert (label, dockerfile, context) == ("small", tmp_path / "Dockerfile.small", tmp_path)
    with pytest.raises(CompareError, match="is not a file"):
        parse_build(f"small={tmp_path / 'missing'}")
    with pytest.raises(CompareError, match="is not a folder"):
        parse_build(f"small={tmp_path / 'Dockerfile.small'}@{tmp_path / 'nowhere'}")


def test_a_code_edit_goes_to_the_shallowest_python_file_outside_tests_and_virtualenvs(tmp_path):
    for path in ("tests/test_a.py", ".venv/lib/x.py", "src/pkg/deep.py", "src/main.py", "zz.py", "requirements.txt",
                 "pyproject.toml"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("# x\n")
    assert code_file(tmp_path) == "zz.py"
    (tmp_path / "zz.py").unlink()
    assert code_file(tmp_path) == str(Path("src/main.py"))
    assert dependency_file(tmp_path) == "requirements.txt"  # before pyproject.toml


def test_memory_that_cannot_be_read_is_none_with_the_reason_and_the_other_figure_is_kept(monkeypatch):
    from bench import image_measures
    from bench.image_measures import Memory

    def no_stats(name: str) -> int:
        raise RuntimeError("the engine's stats for any-container hold no anonymous memory")

    monkeypatch.setattr(image_measures, "memory_kib", no_stats)
    monkeypatch.setattr(image_measures, "rss_kib", lambda name: 15_000)
    memory = Memory("any-container")
    figures = memory.figures(memory.read(), [memory.read(), memory.read()])
    assert figures["memory_idle_kib"] is None and figures["memory_under_load_kib"] is None
    assert figures["rss_idle_kib"] == 15_000 and figures["rss_under_load_kib"] == 15_000
    assert "hold no anonymous memory" in figures["memory_problem"] and "rss_problem" not in figures


def test_compare_refuses_a_bad_command_line_with_the_reason_and_no_traceback():
    result = subprocess.run([sys.executable, "-m", "bench", "compare", "--offline", "a=one", "a=two"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "bench compare: error: the label(s) a name more than one image" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def foreign_images(engine, tmp_path_factory) -> dict[str, str]:
    """The foreign images, tagged apart from every other checkout's; removed afterwards."""
    base = bases.SLIM_BASE if image_exists(bases.SLIM_BASE) else "python:3.13-slim"
    if not image_exists(base):
        unavailable(f"no Python base image ({bases.SLIM_BASE} or python:3.13-slim): run python -m images build")
    run = uuid.uuid4().hex[:8]
    tags = {}
    for label, body in FOREIGN.items():
        context = tmp_path_factory.mktemp(label)
        (context / "Dockerfile").write_text(f"FROM {base}\n{body}")
        tags[label] = f"hello-api-foreign-{run}:{label}"
        build(context, "-q", "-t", tags[label])
    context = tmp_path_factory.mktemp("built")
    (context / "Dockerfile").write_text(f"FROM {base}\n{BUILT}")
    (context / "requirements.txt").write_text("# no dependencies: the install step runs and installs nothing\n")
    (context / "app.py").write_text(APP)
    tags["built-context"] = str(context)
    broken = tmp_path_factory.mktemp("broken")
    (broken / "Dockerfile").write_text(f"FROM {base}\nRUN echo this build fails && false\n")
    tags["broken-context"] = str(broken)
    tags["missing"] = f"hello-api-foreign-{run}:never-built"
    yield tags
    for label in FOREIGN:
        docker("rmi", "-f", tags[label], check=False)
    docker("rmi", "-f", f"{IMAGE}-compare:built", check=False)


@pytest.fixture(scope="module")
def compared(foreign_images, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    output = tmp_path_factory.mktemp("compare")
    images = [f"{label}={foreign_images[label]}" for label in (*FOREIGN, "missing")]
    command = [sys.executable, "-m", "bench", "compare", *images,
               "--build", f"built={foreign_images['built-context']}/Dockerfile",
               "--build", f"broken={foreign_images['broken-context']}/Dockerfile",
               "--port", "8000", "--ready", "/health", "--url", "/hello", "--ready-seconds", "5",
               "--quick", "--runs", "3", "--output", str(output)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    return result, output


@pytest.mark.docker
def test_compare_measures_what_it_can_and_says_why_not_for_the_rest(compared):
    result, output = compared
    assert "Traceback" not in result.stderr
    assert result.returncode == 3, result.stderr[-3000:]  # written, with figures missing and explained
    variants = json.loads((output / "results.json").read_text())["variants"]
    for label in ("healthy", "plain", "built"):
        entry = variants[label]
        assert entry["problems"] == [], (label, entry["problems"])
        assert {"size", "startup", "stop", "load", "open_loop"} <= set(entry), label
        assert entry["load"]["requests_per_second"]["median"] > 0 and entry["load"]["non_2xx"] == 0
        cpu = entry["load"]["cpu_us_per_request"]  # µs of the container's CPU per 2xx
        assert 1 < cpu["min"] <= cpu["median"] <= cpu["max"] < 100_000, (label, cpu)
        assert entry["load"]["memory_idle_kib"] > 1000 and entry["load"]["memory_under_load_kib"] > 1000
        assert entry["load"]["rss_idle_kib"] > entry["load"]["memory_idle_kib"]  # the engine is on this machine
    assert variants["healthy"]["size"]["healthcheck"] and not variants["plain"]["size"]["healthcheck"]
    notfound = variants["notfound"]
    assert "requests_per_second" not in notfound["load"] and notfound["load"]["memory_idle_kib"] > 1000
    assert any("GET /hello answered 404, not a 2xx" in p for p in notfound["problems"])
    assert any("exited with code 3 before answering GET /health" in p and "bye" in p
               for p in variants["exits"]["problems"])
    assert any("listens on port(s) 9000, not 8000: pass --port 9000" in p for p in variants["elsewhere"]["problems"])
    assert any("never answered GET /health with a 2xx within 5 s (listens on 8000)" in p
               for p in variants["silent"]["problems"])
    for label in ("exits", "elsewhere", "silent"):
        assert "size" in variants[label] and "startup" not in variants[label]
    assert any("does not exist here" in p for p in variants["missing"]["problems"])
    assert any(p.startswith("build: not measured: ") and "this build fails" in p
               for p in variants["broken"]["problems"])
    for label in ("missing", "broken"):
        assert set(variants[label]) == {"tag", "note", "problems"}, label
    for label in ("notfound", "exits", "elsewhere", "silent", "missing", "broken"):
        assert f"bench compare: not measured: {label}: " in result.stderr
    assert " exec " not in result.stderr  # memory comes from the engine: no image needs a shell or Python for it


@pytest.mark.docker
def test_compare_runs_the_build_cache_study_on_a_build_entry_with_the_files_it_edited(compared):
    _, output = compared
    cache = json.loads((output / "results.json").read_text())["variants"]["built"]["cache"]
    assert cache["edited_files"] == {"code": "app.py", "dependency": "requirements.txt"}
    assert [step for step in cache["no_change"]["reran"] if " FROM " not in step] == []  # BuildKit re-resolves FROM
    assert not cache["code_edit"]["dependency_step_reran"]  # COPY requirements.txt comes before the code
    assert cache["dependency_edit"]["dependency_step_reran"]


@pytest.mark.docker
def test_the_compare_report_has_every_column_filled_or_explained_and_passes_the_check(compared):
    _, output = compared
    report = (output / "report.md").read_text()
    assert "Every ratio is to `healthy`" in report and "×healthy" in report
    assert "## What could not be measured" in report and "- `exits`: " in report
    assert "## Latency at fixed rates" in report and "## Build cache" in report
    assert "| `notfound` |" in report and "– (no load)" in report
    assert STUDY.check(output) == []


@pytest.mark.docker
def test_bench_sh_reads_the_paths_on_its_command_line_from_where_it_is_run(engine, tmp_path):
    committed = ROOT / "bench" / "results" / "2026-12-01-compare"
    shutil.copytree(committed, tmp_path / "copy")
    result = subprocess.run(["bash", str(ROOT / "scripts" / "bench.sh"), "check", "copy"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "bench check: copy is complete and renders" in result.stdout


@pytest.mark.docker
@pytest.mark.emulated
def test_an_image_for_another_architecture_is_measured_for_size_only_and_says_why(engine, tmp_path):
    """Under QEMU a start-up or a req/s says nothing of the image's speed on its own machine: none is taken."""
    foreign = next(name for name in EMULATED if name.startswith("micro-"))
    tag = image_tag(require_image(foreign))
    result = subprocess.run([sys.executable, "-m", "bench", "compare", f"emulated={tag}", "--quick", "--output",
                             str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 3 and "Traceback" not in result.stderr, result.stderr[-2000:]
    entry = json.loads((tmp_path / "results.json").read_text())["variants"]["emulated"]
    assert entry["size"]["files"] > 50 and not {"startup", "stop", "load"} & set(entry)
    architecture = foreign.rpartition("-")[2]
    assert any(f"is linux/{architecture}, which this {engine_architecture()} engine runs only under emulation" in p
               for p in entry["problems"]), entry["problems"]
    assert "an emulated figure says nothing of its speed" in (tmp_path / "report.md").read_text()
