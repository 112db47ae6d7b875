"""The bench's speed instruments, without Docker: the open-loop generator, the noise record, the control."""

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from test_bench import synthetic_results

from bench import control as overhead
from bench import image_report, noise
from bench.cli import main
from bench.openloop import open_loop, percentile
from bench.studies import STUDY, latency


class QuietHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the servers under study answer

    def log_message(self, *args: object) -> None:
        pass


class ThreadingWSGIServer(WSGIServer):
    daemon_threads = True
    request_queue_size = 1024  # socketserver's backlog of 5 overflowed under load: connections refused late

    def process_request(self, request, client_address):
        threading.Thread(target=self.process_request_thread, args=(request, client_address), daemon=True).start()

    def process_request_thread(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        finally:
            self.shutdown_request(request)


@contextmanager
def wsgi_server(stall_first_seconds: float = 0.0) -> Iterator[int]:
    """A small keep-alive server answering JSON; its first answer can stall."""
    stalled = threading.Event()

    def app(environ, start_response):
        if stall_first_seconds and not stalled.is_set():
            stalled.set()
            time.sleep(stall_first_seconds)
        body = b'{"ok": true}'
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    server = make_server("127.0.0.1", 0, app, server_class=ThreadingWSGIServer, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_the_open_loop_generator_sends_every_scheduled_request_and_records_each_answer():
    with wsgi_server() as port:
        result = open_loop(port, rate=200, seconds=1)
    assert result["sent"] == 200
    assert result["ok"] == 200 and result["errors"] == 0 and result["non_2xx"] == 0
    assert result["p50_seconds"] <= result["p99_seconds"] <= result["p999_seconds"] <= result["max_seconds"]


def test_a_stall_counts_for_every_request_it_delays_not_once():
    # One connection, 100 requests a second, the first answer stalls 0.5 s: the ~50 requests due meanwhile
    # wait for the connection, and each of their latencies says so. A closed loop records one slow answer
    # of 100, so its p99 (the 99th of 100 sorted) would be a fast one.
    with wsgi_server(stall_first_seconds=0.5) as port:
        result = open_loop(port, rate=100, seconds=1, connections=1)
    assert result["ok"] == 100
    assert result["p99_seconds"] > 0.3, result


def test_percentiles_are_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.999) == 100.0
    assert percentile([7.0], 0.99) == 7.0


def test_the_noise_record_sees_a_busy_cpu():
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # let it reach the CPU
        assert noise.background_cpus(0.5) > 0.5
    finally:
        burner.kill()
        burner.wait()


def test_a_run_with_a_busy_sample_is_marked_noisy_in_its_report():
    quiet = noise.summarise([{"label": "before x", "load_average": 0.2, "background_cpus": 0.02}])
    busy = noise.summarise([{"label": "before x", "load_average": 3.0, "background_cpus": 0.9},
                            {"label": "after x", "load_average": 3.1, "background_cpus": 0.05}])
    assert not quiet["noisy"] and "quiet" in noise.describe(quiet)
    assert busy["noisy"] and "NOISY" in noise.describe(busy)
    assert busy["max_background_cpus"] == 0.9


def control(service_rps: list[float], plain_rps: list[float]) -> dict:
    run = lambda rps: {"requests_per_second": rps, "p99_seconds": 0.01, "socket_errors": 0, "non_2xx": 0}  # noqa: E731
    route = overhead.Route("loopback, 8 threads", 8, False)
    samples = {"service": [run(r) for r in service_rps], "plain": [run(r) for r in plain_rps]}
    return overhead.service_against_plain(route, samples, seconds=5)


def test_the_control_ratio_is_taken_round_by_round():
    route = control([900.0, 1100.0, 1000.0], [1000.0, 1000.0, 500.0])
    assert route["ratio"]["values"] == [0.9, 1.1, 2.0]
    assert route["ratio"]["median"] == 1.1


def test_a_hardening_cost_below_the_floor_breaks_a_guarantee_and_fails_bench_check(tmp_path):
    results = synthetic_results()
    results["hardening_cost"] = {"loopback, 8 threads": control([1000.0] * 3, [1000.0] * 3)}
    STUDY.write(image_report.evaluate(results), tmp_path)
    assert study_failures(results) == []
    assert main(["check", str(tmp_path)]) == 0
    results["hardening_cost"] = {"loopback, 8 threads": control([700.0] * 3, [1000.0] * 3)}
    STUDY.write(results, tmp_path)
    assert study_failures(results) == [
        "hardening cost, loopback, 8 threads: the service served 0.70× what plain waitress served in the same run "
        "(floor 0.8×): a slowdown of the transport; profile it (py-spy record --threads --idle) against the "
        "commit before"]
    assert main(["check", str(tmp_path)]) == 1


def test_the_hardening_targets_are_judged_from_the_same_run_ratio():
    results = synthetic_results()
    results["hardening_cost"] = {"loopback, 8 threads": control([1300.0] * 3, [1000.0] * 3),
                                 "loopback, 1 thread": control([1400.0] * 3, [1000.0] * 3)}
    targets = {t["target"]: t["met"] for t in image_report.evaluate_targets(results)}
    assert targets["hardening cost, loopback, 8 threads: ≥ 0.95× plain waitress's throughput, p99 ≤ 1.1× its p99"]
    assert targets["beyond waitress, loopback, 8 threads: ≥ 1.2× plain waitress's throughput"]
    assert not targets["beyond waitress, loopback, 1 thread: ≥ 1.5× plain waitress's throughput"]
    results["targets"] = image_report.evaluate_targets(results)
    assert "## What the hardening costs" in image_report.markdown(results)


def synthetic_latency() -> dict:
    def at(p99: float) -> dict:
        return {"p50_seconds": p99 / 4, "p99_seconds": p99, "p999_seconds": p99 * 2, "p99_min_seconds": p99,
                "p99_max_seconds": p99, "runs": 1, "sent": 100, "errors": 0, "non_2xx": 0, "achieved_rate": 100,
                "send_lateness_p99_seconds": 0.001}
    p99 = {"seed": 0.040, "slim": 0.010, "distroless": 0.030, "micro": 0.005, "gunicorn 1×8": 0.020,
           "granian 1": 0.004}
    return {"plan": latency.PLANS["quick"], "seed_capacity": 400.0, "rates": [100], "shares": [0.25],
            "subjects": {label: {"100": at(p99[label])} for label in latency.SUBJECTS},
            "noise": noise.summarise([])}


def test_the_latency_targets_compare_each_image_with_seed_and_gunicorn_at_the_same_rate():
    goals = {g["target"]: g["met"] for g in latency.evaluate_targets(synthetic_latency())}
    assert goals["slim at 100 req/s: p99 ≤ 0.5× seed's and ≤ gunicorn's"]  # 10 ms: under 20 and 40
    assert not goals["distroless at 100 req/s: p99 ≤ 0.5× seed's and ≤ gunicorn's"]  # 30 ms: over half of 40
    assert goals["micro at 100 req/s: p99 ≤ 0.5× seed's and ≤ gunicorn's"]


def test_a_latency_report_renders_and_a_tampered_one_fails_the_check(tmp_path):
    results = synthetic_latency()
    results["targets"] = latency.evaluate_targets(results)
    latency.STUDY.write(results, tmp_path)
    assert latency.STUDY.check(tmp_path) == []
    assert "| `slim` | 2.50 / 10.00 / 20.00 |" in (tmp_path / "latency.md").read_text()
    (tmp_path / "latency.md").write_text("edited by hand")
    assert latency.STUDY.check(tmp_path)
    del results["subjects"]["granian 1"]
    (tmp_path / "latency.json").write_text(json.dumps({"format": latency.STUDY.version, **results}))
    assert any("not every subject" in p for p in latency.STUDY.check(tmp_path))



def test_bench_commits_unpacks_a_revisions_service_and_names_a_bad_revision(tmp_path, capsys):
    from bench.revisions import source_tree

    tree = source_tree("HEAD", tmp_path)
    assert (tree / "service" / "server.py").is_file()
    assert main(["commits", "no-such-revision", "--rounds", "1", "--output", str(tmp_path / "out")]) == 1
    assert "git archive no-such-revision service failed" in capsys.readouterr().err


def test_the_latency_figures_come_from_the_round_with_the_median_p99_the_worse_of_two():
    rounds = [{"p50_seconds": p99 / 4, "p99_seconds": p99, "p999_seconds": p99 * 2, "sent": 10, "errors": 0,
               "non_2xx": 0, "achieved_rate": 100.0, "send_lateness_p99_seconds": 0.001} for p99 in (0.002, 0.009)]
    condensed = latency.median_p99_round(rounds)
    assert condensed["p99_seconds"] == 0.009 and condensed["p50_seconds"] == 0.009 / 4
    assert (condensed["p99_min_seconds"], condensed["p99_max_seconds"]) == (0.002, 0.009)
    assert len(condensed["rounds"]) == 2
    assert latency.median_p99_round([*rounds, {**rounds[0], "p99_seconds": 0.005}])["p99_seconds"] == 0.005


def test_a_profile_is_summarised_per_thread_group_as_shares_of_all_samples():
    from bench.studies.profile import summarise

    raw = ("thread (1): MainThread;<module> (x.py:1);loop (w.py:2);poll (w.py:3) 6\n"
           "thread (2): waitress-0;run (t.py:1);service (t.py:9) 3\n"
           "thread (3): waitress-1;run (t.py:1);write (t.py:20) 1\n")
    summary = summarise(raw)
    assert summary["samples"] == 10
    assert summary["groups"] == {"event loop (main thread)": 0.6, "worker threads": 0.4}
    assert summary["self"]["worker threads"] == {"service": 0.3, "write": 0.1}
    assert summary["inclusive"]["event loop (main thread)"]["loop"] == 0.6


def study_failures(results: dict) -> list[str]:
    return image_report.guarantees(results)


def test_bench_commits_counts_the_server_s_own_cpu_time_per_answered_request():
    from bench.studies.commits import measured_run

    with overhead.host_server("service", 2) as server:
        run = measured_run(server, 1)
    assert run["requests"] > 0 and run["non_2xx"] == 0
    assert run["cpu_us_per_request"] > 0  # the server's CPU time moved while it answered, however little


def test_a_commits_run_from_before_cpu_was_read_renders_it_as_not_measured():
    from bench.studies import commits

    figures = {"median": 1.0, "min": 1.0, "max": 1.0}
    document = {"command": "python -m bench commits HEAD", "threads": 8, "rounds": 1, "seconds": 1,
                "connections": 16, "revisions": {"HEAD": "HEAD"}, "noise": None,
                "servers": {label: {"requests_per_second": figures, "p99_seconds": figures}
                            for label in ("HEAD", commits.CONTROL)}}
    upgraded = commits.run_results.upgraded(document, commits.STUDY.upgrades)
    assert upgraded["servers"]["HEAD"]["cpu_us_per_request"] is None
    assert "not measured" in commits.markdown(upgraded)
