"""The bench's own logic, without Docker: parsing wrk and BuildKit, statistics, the report and its check."""

import ast
import json
from pathlib import Path

import pytest

from bench import image_report
from bench.image_measures import KINDS, kind_of, step_counts
from bench.load import parse_wrk, summarise_wrk_runs, summary, with_cpu
from bench.studies import STUDY, reliability, workers
from images.variants import VARIANTS, Builder, naive_order

WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:5000/hello/bench
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.50ms    3.10ms  40.01ms   90.00%
  Latency Distribution
     50%    6.06ms
     75%    7.00ms
     90%    9.00ms
     99%   17.47ms
  7518 requests in 3.00s, 1.20MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:   2506.12
Transfer/sec:    410.00KB
"""

BUILDKIT_OUTPUT = """#1 [internal] load build definition from Dockerfile
#5 [build 1/7] FROM docker.io/library/python:3.13-slim
#5 CACHED
#7 [build 3/7] COPY requirements.lock .
#7 CACHED
#8 [build 4/7] RUN --mount=type=cache,target=/root/.cache/pip python3 -m pip install -r requirements.lock
#8 CACHED
#9 [build 6/7] COPY service/ service/
#9 DONE 0.1s
#10 [runtime 5/6] COPY --from=build /app/service /app/service
#10 DONE 0.1s
"""


def test_parse_wrk_reads_rate_percentiles_and_every_error_count():
    parsed = parse_wrk(WRK_OUTPUT)
    assert parsed == {"requests_per_second": 2506.12, "requests": 7518, "p50_seconds": pytest.approx(0.00606),
                      "p99_seconds": pytest.approx(0.01747), "non_2xx": 4, "socket_errors": 6}


def test_cpu_per_request_is_the_servers_cpu_over_a_run_divided_by_its_2xx_answers_only():
    counter = iter([5_000_000_000, 6_500_000_000])  # ns before and after: 1.5 s of CPU over the run
    run = with_cpu(lambda: parse_wrk(WRK_OUTPUT), lambda: next(counter))
    assert run["cpu_us_per_request"] == pytest.approx(1.5e6 / (7518 - 4))  # the 4 non-2xx are not answers
    nothing = iter([0, 10])
    assert with_cpu(lambda: {**parse_wrk(WRK_OUTPUT), "non_2xx": 7518}, lambda: next(nothing))[
        "cpu_us_per_request"] is None


def test_runs_summarise_cpu_per_request_only_when_every_run_has_it():
    runs = [{**parse_wrk(WRK_OUTPUT), "cpu_us_per_request": cpu} for cpu in (150.0, 170.0, 160.0)]
    assert summarise_wrk_runs(runs)["cpu_us_per_request"]["median"] == 160.0
    assert summarise_wrk_runs([*runs, {**runs[0], "cpu_us_per_request": None}])["cpu_us_per_request"] is None
    assert summarise_wrk_runs([parse_wrk(WRK_OUTPUT)])["cpu_us_per_request"] is None  # a run that did not read it


def test_step_counts_reads_cache_hits_and_whether_pip_reran():
    counts = step_counts(BUILDKIT_OUTPUT)
    assert (counts["steps"], counts["cached"], counts["dependency_step_reran"]) == (5, 3, False)
    rerun = step_counts(BUILDKIT_OUTPUT.replace("#8 CACHED\n", "#8 DONE 2.0s\n"))
    assert rerun["dependency_step_reran"] is True


def test_summary_gives_min_median_p90_max():
    result = summary([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (result["min"], result["median"], result["max"], result["runs"]) == (1.0, 3.0, 5.0, 5)
    assert result["p90"] == 5.0


def test_the_naive_variant_differs_from_slim_only_in_copy_order():
    slim = VARIANTS["slim"].dockerfile_text()
    naive = VARIANTS["naive"].dockerfile_text()
    assert naive.index("COPY . .") < naive.index("pip install")
    assert "COPY service/ service/" not in naive
    assert [line for line in slim.splitlines() if "COPY" not in line and not line.startswith("#")] == \
        [line for line in naive.splitlines() if "COPY" not in line and not line.startswith("#")]
    with pytest.raises(ValueError):
        naive_order("FROM scratch\n")


def synthetic_results() -> dict:
    def variant(size: int, startup: float, rps: float) -> dict:
        build = {"seconds": 2.0, "steps": 10, "cached": 5, "reran": [], "dependency_step_reran": False}
        return {
            "tag": "t", "note": "n",
            "size": {"uncompressed_bytes": size, "compressed_bytes": size // 3, "layers": [
                {"bytes": size, "created_by": "COPY x | y"}], "python": "3.13.5", "files": 10, "shell": True,
                "package_manager": False, "pip": True, "bytes_by_kind": dict.fromkeys(KINDS, size // len(KINDS))},
            "cache": {"cold": build, "no_change": build, "code_edit": build, "dependency_edit": build,
                      "code_edit_share_of_cold": 1.0},
            "startup": summary([startup, startup * 1.1, startup * 0.9]),
            "stop": {**summary([0.2, 0.3, 0.25]), "exit_codes": [0, 0, 0]},
            "load": {"connections": 16, "seconds": 10, "runs": [], "requests_per_second": summary([rps, rps]),
                     "cpu_us_per_request": summary([2e5 / rps, 2e5 / rps]),
                     "p50_seconds": 0.005, "p99_seconds": 0.02, "non_2xx": 0, "socket_errors": 0,
                     "memory_idle_kib": 9000, "memory_under_load_kib": 9500,
                     "rss_idle_kib": 16000, "rss_under_load_kib": 17000},
        }

    return {"label": "synthetic", "mode": "quick", "plan": {"startup_runs": 3, "stop_runs": 3, "load_runs": 2},
            "date": "d", "baseline": "seed", "request": {"port": 5000, "ready": "/health", "url": "/hello/bench"},
            "machine": {"platform": "p", "cpus": 2, "docker_server": "20.10", "image_store": "overlay2",
                        "engine_address": "127.0.0.1", "bases": "local"},
            "size_source": "layers", "noop_startup": summary([0.3, 0.31, 0.29]),
            "startup_phases": {"micro": {"docker": 0.25, "python": 0.1, "first_answer": 0.04, "total": 0.39,
                                         "imports": 0.05, "runs": 3}},
            "variants": {"seed": variant(120_000_000, 0.6, 600), "naive": variant(110_000_000, 0.4, 2400),
                         "slim": variant(110_000_000, 0.4, 2500), "distroless": variant(50_000_000, 0.4, 2600),
                         "micro": variant(12_000_000, 0.39, 2600)}}


def test_targets_are_judged_from_the_measurements():
    targets = {t["target"]: t["met"] for t in image_report.evaluate_targets(synthetic_results())}
    assert targets["distroless ≤ 50% of slim's uncompressed size"] is True
    assert targets["slim: throughput ≥ 4× seed"] is True  # 2500 / 600
    assert targets["slim: p99 ≤ 15 ms at 16 connections"] is False
    assert targets["slim: idle RSS ≤ 10 MiB"] is False


def test_the_micro_targets_are_judged_against_the_same_run(tmp_path):
    results = synthetic_results()
    targets = {t["target"]: t["met"] for t in image_report.evaluate_targets(results)}
    assert targets["micro uncompressed ≤ 15.0 MB and ≤ 0.30× distroless"] is True  # 12 MB, 0.24 of distroless
    assert targets["micro gzip ≤ 6.0 MB"] is True  # 4 MB
    assert targets["micro: start-up to first 200 no slower than distroless's"] is True  # 390 vs 400 ms
    assert targets["micro: start-up to first 200 ≤ 1.15× a noop container"] is False  # 390 vs 300 ms
    results["variants"]["micro"]["size"].update(uncompressed_bytes=16_000_000, compressed_bytes=7_000_000)
    results["variants"]["micro"]["startup"] = summary([0.41, 0.41, 0.41])
    targets = {t["target"]: t["met"] for t in image_report.evaluate_targets(results)}
    assert targets["micro uncompressed ≤ 15.0 MB and ≤ 0.30× distroless"] is False
    assert targets["micro gzip ≤ 6.0 MB"] is False
    assert targets["micro: start-up to first 200 no slower than distroless's"] is False


@pytest.mark.parametrize(("path", "kind"), [
    ("usr/bin/python3.13", "interpreter"), ("usr/local/lib/libpython3.13.so.1.0", "interpreter"),
    ("usr/lib/x86_64-linux-gnu/libc.so.6", "shared libraries"),
    ("usr/lib/python3.13/lib-dynload/resource.cpython-313-x86_64-linux-gnu.so", "shared libraries"),
    ("usr/lib/python3.13/os.pyc", "stdlib bytecode"), ("usr/local/lib/python3.13/__pycache__/os.cpython-313.pyc",
                                                      "stdlib bytecode"),
    ("usr/lib/python3.13/os.py", "stdlib source"), ("app/deps/waitress/server.pyc", "dependencies"),
    ("app/service/app.pyc", "service"), ("usr/local/lib/python3.13/site-packages/pip/__init__.py", "other"),
    ("etc/passwd", "other"),
])
def test_every_file_of_an_image_gets_one_kind_by_its_path(path, kind):
    assert kind_of(path) == kind


def test_a_written_report_passes_the_check_and_a_tampered_one_fails(tmp_path):
    results = synthetic_results()
    STUDY.write(image_report.evaluate(results), tmp_path)
    assert STUDY.check(tmp_path) == []
    text = (tmp_path / "report.md").read_text()
    assert "## Throughput" in text and "| `seed` |" in text and "4.17×" in text
    assert "| server CPU per request | CPU ×seed |" in text and "| 0.24× |" in text  # 4.17 times the rate, 0.24 the CPU
    assert "| image | interpreter | shared libraries |" in text and "| `micro` |" in text
    assert "| `micro` | 250 ms | 100 ms | 50 ms | 40 ms | 390 ms | 3 |" in text  # start-up phases
    (tmp_path / "report.md").write_text(text.replace("## Throughput", "## Speed"))
    assert STUDY.check(tmp_path)
    (tmp_path / "chart.svg").write_text("<svg")
    assert any("chart.svg" in problem for problem in STUDY.check(tmp_path))


@pytest.mark.parametrize("study", [STUDY, workers.STUDY], ids=lambda study: study.name)
def test_the_committed_full_runs_render_and_pass_the_check(study):
    from conftest import ROOT

    committed = sorted(p.parent for p in (ROOT / "bench" / "results").glob(f"*/{study.json}"))
    assert committed, f"no committed run with {study.json} under bench/results/"
    for directory in committed:
        assert study.check(directory) == [], directory
        assert json.loads((directory / study.json).read_text())["mode"] == "full"


def studies_imported(path: Path, studies: set[str]) -> set[str]:
    """The modules of bench/studies/ (named in `studies`) that the module at `path` imports, however spelled."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ("bench.studies", "bench")[node.level - 1] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            names = {module} | {f"{module}.{alias.name}" for alias in node.names}
        else:
            continue
        found |= {name.split(".")[2] for name in names if name.startswith("bench.studies.")} & studies
    return found


def test_no_study_imports_another_study():
    from conftest import ROOT

    modules = {path.stem: path for path in (ROOT / "bench" / "studies").glob("*.py") if path.stem != "__init__"}
    sideways = {name: sorted(found) for name, path in modules.items()
                if (found := studies_imported(path, set(modules)) - {name})}
    assert sideways == {}, f"studies import other studies; move what they share to the bench core: {sideways}"


def test_every_committed_run_of_every_study_passes_the_check():
    from conftest import ROOT

    from bench.studies import by_files

    for study in by_files():
        for directory in sorted(p.parent for p in (ROOT / "bench" / "results").glob(f"*/{study.json}")):
            assert study.check(directory) == [], directory
            assert json.loads((directory / study.json).read_text())["format"] == study.version, directory


def test_a_document_of_an_older_format_is_upgraded_when_loaded_and_written_in_the_current_one(tmp_path):
    results = synthetic_results()
    older = {key: value for key, value in results.items()
             if key not in ("baseline", "request", "date", "size_source")}
    older["machine"] = {**{k: v for k, v in results["machine"].items() if k not in ("image_store", "engine_address")},
                        "date": "d"}
    for entry in older["variants"].values():  # memory was the first process's RSS, read on the host
        entry["load"] = {k: v for k, v in entry["load"].items() if not k.startswith(("memory_", "cpu_"))}
    older["rss_from"] = "host"
    (tmp_path / STUDY.json).write_text(json.dumps(older))
    loaded = STUDY.load(tmp_path)
    assert (loaded["baseline"], loaded["request"]["url"], loaded["date"]) == ("seed", "/hello/bench", "d")
    assert loaded["size_source"] == "engine"  # measured through the engine's own figures, and says so
    assert loaded["machine"]["image_store"] == "overlay2"  # where every run before format 3 was made
    assert "Sizes from the engine" in STUDY.render(loaded)["report.md"]
    seed = loaded["variants"]["seed"]["load"]  # no anonymous memory then: missing, and says why
    assert (seed["memory_idle_kib"], seed["memory_under_load_kib"], seed["rss_idle_kib"]) == (None, None, 16000)
    assert "memory: runs before format 4 read only the first process's RSS" in STUDY.render(loaded)["report.md"]
    assert loaded["machine"]["engine_address"] == "127.0.0.1" and "rss_from" not in loaded
    assert seed["cpu_us_per_request"] is None  # no CPU read before format 5: the report says so
    assert "| `seed` | 600 | 600–600 | 1.00× | not measured | – |" in STUDY.render(loaded)["report.md"]
    STUDY.write(loaded, tmp_path)
    assert json.loads((tmp_path / STUDY.json).read_text())["format"] == STUDY.version == 5
    assert STUDY.check(tmp_path) == []


def test_a_compare_report_where_no_image_answered_the_load_url_names_the_plans_wrk_settings():
    results = synthetic_results()
    results.update(compare=True, plan={**results["plan"], "connections": 12, "load_seconds": 3})
    for entry in results["variants"].values():
        entry["load"] = {"memory_idle_kib": 9000, "rss_idle_kib": 16000}  # idle only: --url answered no 2xx
    report = STUDY.render(image_report.evaluate(results))["report.md"]
    assert "wrk --latency -t2 -c12 -d3s" in report


def test_writing_one_study_leaves_the_other_studies_files_alone(tmp_path):
    STUDY.write(image_report.evaluate(synthetic_results()), tmp_path)
    before = {path.name: path.read_text() for path in tmp_path.iterdir()}
    reliability.STUDY.write(reliability.evaluate(synthetic_reliability()), tmp_path)
    assert {name: (tmp_path / name).read_text() for name in before} == before
    assert STUDY.check(tmp_path) == []


def synthetic_reliability(**stop: int) -> dict:
    soak = {"requests_per_second": 2000.0, "requests": 40000, "p50_seconds": 0.02, "p99_seconds": 0.05,
            "non_2xx": 0, "socket_errors": 0, "rss_at_10s_kib": 16000, "rss_at_end_kib": 16000, "seconds": 20,
            "connections": 64, "rss_growth": 0.0, "ok": True}
    stopped = {"exit_code": 0, "stop_seconds": 0.3, "answered_by_server": 100, "received_by_client": 100,
               "lost": 0, "client_socket_errors": 5, "client_non_2xx": 0, "server_said": "Stopped cleanly",
               "ok": True, **stop}
    lockout = {"silent": 1000, "dripping": 50, "fresh_clients": 10, "fresh_clients_served": 10,
               "fresh_client_seconds": summary([0.01, 0.02])}
    return {"mode": "quick", "date": "d", "images": {"slim": {"soak": soak, "stop_under_load": stopped,
                                                              "lockout": lockout}},
            "tuning": {"threads": {"8": {"requests_per_second": summary([2000.0]), "p50_seconds": 0.01,
                                         "p99_seconds": 0.05, "socket_errors": 0, "seconds": 5}},
                       "connection_limit": {"half_sent_connections": 300, "fresh_client_served": {},
                                            "route": "direct"}},
            "crowd": []}


def test_guarantees_hold_for_a_clean_run_and_break_on_a_lost_request_or_a_kill():
    reliability_failures, study_failures = reliability.failures, image_report.guarantees
    assert reliability_failures(synthetic_reliability()) == []
    lost = reliability_failures(synthetic_reliability(received_by_client=99, lost=1))
    assert lost == ["slim: stopping under load, the server answered 100 requests but the client received 99: 1 lost"]
    assert reliability_failures(synthetic_reliability(exit_code=137))
    locked = synthetic_reliability()
    locked["images"]["slim"]["lockout"]["fresh_clients_served"] = 9
    assert reliability_failures(locked)
    results = synthetic_results()
    assert study_failures(results) == []
    results["variants"]["distroless"]["stop"]["exit_codes"] = [0, 137, 0]
    assert study_failures(results) == ["distroless: docker stop left exit codes [0, 137, 0]; every one must be 0 "
                                       "(137: it was killed)"]
    results["variants"]["seed"]["stop"]["exit_codes"] = [137]  # the baseline is expected to be killed
    assert len(study_failures(results)) == 1


def test_bench_check_fails_on_a_broken_guarantee_even_when_every_file_renders(tmp_path):
    from bench.cli import main

    results = image_report.evaluate(synthetic_results())
    STUDY.write(results, tmp_path)
    reliability.STUDY.write(reliability.evaluate(synthetic_reliability()), tmp_path)
    assert main(["check", str(tmp_path)]) == 0
    reliability.STUDY.write(reliability.evaluate(synthetic_reliability(received_by_client=90, lost=10)), tmp_path)
    assert main(["check", str(tmp_path)]) == 1


def test_build_commands_name_a_dockerfile_that_exists_so_they_can_be_run_as_printed():
    from pathlib import Path

    for name in ("seed", "naive", "slim", "distroless"):
        command = Builder(offline=False).options(VARIANTS[name])
        assert "-" not in command[command.index("-f") + 1:command.index("-f") + 2]
        assert Path(command[command.index("-f") + 1]).read_text() == VARIANTS[name].dockerfile_text()


def test_the_bench_help_shows_the_study_options_that_apply_without_a_sub_command(capsys):
    from bench import cli
    with pytest.raises(SystemExit):
        cli.run(["--help"])
    shown = capsys.readouterr().out
    for option in ("--offline", "--quick", "--output OUTPUT", "--runs RUNS", "HELLO_API_IMAGE"):
        assert option in shown, option


def test_the_start_up_study_reads_the_serving_line_s_utc_stamp():
    from bench.image_measures import SERVING_LINE, epoch
    stderr = ("2026-12-01T20:16:27.525Z WARNING service: APP_X is not a setting of this service\n"
              "2026-12-01T20:16:27.531Z INFO service.lifecycle: hello-api 1.0.0 serving environment=x on http://[::]:5000\n")
    serving = SERVING_LINE.search(stderr)
    assert serving[1] == "2026-12-01T20:16:27.531Z"
    assert epoch(serving[1], "%Y-%m-%dT%H:%M:%S") == 1796156187.531

