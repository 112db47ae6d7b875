"""`python -m service` as a real process: HTTP on a socket, configuration, logs, signals, limits."""

import contextlib
import http.server
import logging
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import ROOT, in_ci, refuses_connections, service_environment, wait_until
from raw_http import (
    HALF_SENT_REQUEST,
    address,
    assert_fresh_client_is_answered,
    connect,
    exchange,
    held_connections,
    read_answer,
    read_until_closed,
    request,
    unread_bytes_at_server,
)
from support import free_port
from waitress import wasyncore
from waitress.task import ThreadedTaskDispatcher

from service.app import create_app
from service.config import Settings
from service.transport import Transport
from service.transport.dispatcher import QueueDepthSummary

ACCESS_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (?P<client>\S+) (?P<method>\S+) (?P<target>\S+) "
                         r"(?P<status>\d{3}) (?P<ms>\d+\.\d\d)ms")


def test_serves_health_and_hello_over_http(start_service):
    running = start_service({"APP_ENV": "production"})
    health = requests.get(f"{running.url}/health", timeout=5)
    assert health.json() == {"status": "healthy", "environment": "production"}
    assert health.headers["Content-Type"] == "application/json; charset=utf-8"
    assert health.headers["Cache-Control"] == "no-store"
    hello = requests.get(f"{running.url}/hello/J%C3%BCrgen", timeout=5)
    assert hello.json() == {"message": "Hello, Jürgen!", "environment": "production"}


def test_unknown_paths_and_methods_answer_json_over_http(start_service):
    running = start_service()
    assert requests.get(f"{running.url}/nope", timeout=5).json()["error"] == "not_found"
    refused = requests.delete(f"{running.url}/health", timeout=5)
    assert (refused.status_code, refused.headers["Allow"]) == (405, "GET, HEAD")
    assert refused.json()["error"] == "method_not_allowed"


def test_head_answers_headers_only_over_http(start_service):
    running = start_service()
    head = requests.head(f"{running.url}/hello/World", timeout=5)
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["Content-Length"]) == len(requests.get(f"{running.url}/hello/World").content)


def test_no_server_header_advertises_the_software(start_service):
    running = start_service()
    assert "Server" not in requests.get(f"{running.url}/health", timeout=5).headers


def test_accepted_connections_are_not_held_back_by_nagles_algorithm():
    """Without TCP_NODELAY on accepted connections, an answer written in two sends waits about 40 ms
    for a delayed ACK. The option itself is the evidence (its speed is the bench's to measure)."""
    with transport_in_this_process(threads=1) as transport, connect(address_of(transport)):
        deadline = time.monotonic() + 10
        while not transport.channels() and time.monotonic() < deadline:
            wasyncore.loop(timeout=0.05, map=transport.map, count=1)
        [channel] = transport.channels()
        assert channel.socket.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_a_signal_after_the_drain_closed_everything_is_harmless():
    """A second SIGTERM reaching a worker that had already drained (its wake-up pipe closed) raised
    EBADF from the signal handler: the worker exited 1 instead of 0."""
    with transport_in_this_process(threads=1) as transport:
        transport.drain(0, cut_short=lambda: True)
        transport.wake()


def test_a_task_thread_that_finishes_after_the_drain_closed_the_wake_up_pipe_is_harmless():
    """A thread that wrote its answer pulls the trigger to wake the loop; the drain may have closed it just
    before (EBADF, logged as an uncaught exception in a thread, once in a fresh-clone run)."""
    with transport_in_this_process(threads=1) as transport:
        transport.drain(0, cut_short=lambda: False)
        assert transport.listeners[0].trigger._closed
        transport.listeners[0].pull_trigger()


def test_the_connection_limit_counts_no_listening_socket_or_wake_up_pipe_as_a_client():
    """Each listener is told, when built, how many of the shared map's dispatchers are no client's (every
    listener and its wake-up pipe): with '*' there is one listener per address family."""
    with transport_in_this_process(threads=1, host="*") as transport:
        assert transport.listeners
        for listener in transport.listeners:
            assert listener.not_clients == len(transport.map)
            assert listener.client_connections() == 0


@contextlib.contextmanager
def transport_in_this_process(threads: int, host: str = "127.0.0.1"):
    transport = Transport(create_app("test"), Settings(host=host, port=free_port(), threads=threads), None)
    try:
        yield transport
    finally:
        transport.drain(0, cut_short=lambda: True)


def address_of(transport: Transport) -> tuple[str, int]:
    return ("127.0.0.1", transport.listeners[0].effective_port)


# ---- logs --------------------------------------------------------------------------------------------

def test_access_log_has_a_line_per_request_on_stdout_and_startup_on_stderr(start_service):
    running = start_service({"APP_ENV": "staging"})
    requests.get(f"{running.url}/hello/J%C3%BCrgen?x=1", timeout=5)
    requests.post(f"{running.url}/health", timeout=5)
    code, out, err = running.stop()
    assert code == 0
    lines = [ACCESS_LINE.fullmatch(line) for line in out.splitlines()]
    assert all(lines), out
    logged = [(m["client"], m["method"], m["target"], m["status"]) for m in lines]
    assert ("127.0.0.1", "GET", "/hello/J%C3%BCrgen?x=1", "200") in logged  # the target as sent
    assert ("127.0.0.1", "POST", "/health", "405") in logged
    assert f"hello-api 1.0.0 serving environment=staging on http://127.0.0.1:{running.port}" in err


def test_a_crafted_path_cannot_forge_an_access_log_line(start_service):
    running = start_service()
    requests.get(f"{running.url}/hello/a%0DFORGED%0AFORGED%20GET%20admin", timeout=5)
    _, out, _ = running.stop()
    assert " GET /hello/a%0DFORGED%0AFORGED%20GET%20admin 200 " in out
    assert not any(line.startswith("FORGED") for line in out.splitlines())


@pytest.mark.parametrize("level", ["WARNING", "ERROR"])
def test_log_level_warning_or_error_silences_the_access_log_but_keeps_the_start_and_stop_lines(start_service, level):
    running = start_service({"APP_LOG_LEVEL": level, "APP_PROT": "1"})
    for _ in range(3):
        requests.get(f"{running.url}/hello/quiet", timeout=5)
    code, out, err = running.stop()
    assert code == 0
    assert out == ""
    assert " serving environment=development on " in err
    assert "Stop signal received" in err and "Stopped cleanly" in err
    assert ("APP_PROT" in err) == (level == "WARNING")  # a warning: shown at WARNING, not at ERROR


def test_an_exception_in_the_app_answers_json_500_and_logs_the_traceback_on_stderr(start_service):
    running = start_service({"TEST_SERVICE_HOOKS": "broken_health"}, module="hooked_service", wait=False)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            answer = requests.get(f"{running.url}/health", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.05)
    assert answer.status_code == 500
    assert answer.json()["error"] == "internal_error"
    assert b"secret internal detail" not in answer.content
    _, out, err = running.stop()
    assert "Traceback" in err and "RuntimeError: secret internal detail" in err
    assert " GET /health 500 " in out


def test_a_misspelt_variable_is_named_with_the_closest_known_one(start_service):
    running = start_service({"APP_PROT": "6000"})
    _, _, err = running.stop()
    warnings = [line for line in err.splitlines() if "APP_PROT" in line]
    assert len(warnings) == 1
    assert "APP_PROT is not a setting of this service and is ignored; did you mean APP_PORT?" in warnings[0]


def test_a_burst_that_outruns_the_threads_writes_a_summary_not_a_line_per_request(start_service):
    running = start_service({"APP_THREADS": "1"})

    def hammer() -> None:
        with requests.Session() as session:
            for _ in range(60):
                session.get(f"{running.url}/hello/burst", timeout=10)

    clients = [threading.Thread(target=hammer) for _ in range(12)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    _, _, err = running.stop()
    assert "Task queue depth" not in err
    summaries = [line for line in err.splitlines() if "all worker threads were busy" in line]
    assert 1 <= len(summaries) <= 2, err  # the first at once, the rest at the stop


def test_every_worker_thread_is_idle_before_the_first_connection_can_be_accepted(monkeypatch):
    """waitress counts a thread busy until it first waits for work: a request in that moment was reported
    as "all worker threads were busy". Threads slowed at start-up show it deterministically."""
    real_handler = ThreadedTaskDispatcher.handler_thread

    def slow_to_start(self, thread_no):
        time.sleep(0.2)
        return real_handler(self, thread_no)

    monkeypatch.setattr(ThreadedTaskDispatcher, "handler_thread", slow_to_start)
    with transport_in_this_process(threads=4) as transport:
        assert transport.dispatcher.active_count == 0


def test_the_first_queue_summary_says_the_time_since_start_up_not_the_period(caplog):
    now = [1000.0]
    summary = QueueDepthSummary(period=60, clock=lambda: now[0])
    now[0] += 0.3
    with caplog.at_level(logging.WARNING, logger="service"):
        for elapsed in (0, 30, 31):  # the first is said at once; the next within the period only counted
            now[0] += elapsed
            summary.queued(1)
            summary.flush()  # as the event loop does every turn
    assert [r.getMessage().split(". ")[0] for r in caplog.records] == [
        "all worker threads were busy: 1 request(s) waited for one, at most 1 at once, in the last 0.3s",
        "all worker threads were busy: 2 request(s) waited for one, at most 1 at once, in the last 61.0s"]


# ---- stopping ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_closes_idle_keep_alive_connections_and_exits_0(start_service, signum):
    running = start_service({"APP_SHUTDOWN_GRACE": "30"})
    with connect(address(running)) as idle:
        idle.sendall(request("/health"))
        assert read_answer(idle).startswith(b"HTTP/1.1 200")
        code, _, err = running.stop(signum, timeout=15)  # within 15 s: the 30 s grace is not waited out
        _, closed, _ = read_until_closed(idle, 5)
    assert code == 0
    assert closed
    assert "Stopped cleanly" in err
    assert "Traceback" not in err


def test_a_stop_under_keep_alive_load_answers_what_was_received_then_closes_without_waiting_for_more(
        start_service):
    running = start_service({"APP_SHUTDOWN_GRACE": "20"})
    answered, stop_hammering = [], threading.Event()

    def hammer() -> None:
        with requests.Session() as session:
            deadline = time.monotonic() + 15
            while not stop_hammering.is_set() and time.monotonic() < deadline:
                try:
                    answered.append(session.get(f"{running.url}/hello/busy", timeout=5).status_code)
                except requests.RequestException:
                    time.sleep(0.01)

    clients = [threading.Thread(target=hammer) for _ in range(4)]
    for client in clients:
        client.start()
    wait_until(lambda: len(answered) >= 40, "answers under load")
    try:
        # Within 10 s, while the clients still send (for 15 s) and long before the 20 s grace: the drain
        # did not wait on clients that kept sending.
        code, out, err = running.stop(timeout=10)
        assert all(client.is_alive() for client in clients)
    finally:
        stop_hammering.set()
        for client in clients:
            client.join()
    assert code == 0
    assert "Stopped cleanly" in err
    assert set(answered) == {200}
    assert out.count(" GET /hello/busy 200 ") == len(answered)  # every answer logged was received


def start_slow(start_service, tmp_path: Path, **env: str):
    started = tmp_path / "started"
    running = start_service({"TEST_SERVICE_HOOKS": "slow", "STARTED_FILE": str(started), **env},
                            module="hooked_service")
    answers = []
    thread = threading.Thread(target=lambda: answers.append(_get(f"{running.url}/slow")), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started.exists(), "the slow request never reached the app"
    return running, answers, thread


def _get(url: str) -> requests.Response | Exception:
    try:
        return requests.get(url, timeout=60)
    except requests.RequestException as problem:
        return problem


def test_a_request_in_flight_at_sigterm_completes_and_new_connections_are_refused(start_service, tmp_path):
    running, answers, slow = start_slow(start_service, tmp_path, SLOW_SECONDS="1.5")
    running.process.send_signal(signal.SIGTERM)
    wait_until(lambda: refuses_connections(running.port), "new connections refused after SIGTERM")
    slow.join(timeout=10)
    code, _, err = running.finish()
    assert isinstance(answers[0], requests.Response)
    assert answers[0].json() == {"slow": "done"}
    assert code == 0
    assert "Stopped cleanly" in err


def test_pipelined_requests_received_before_sigterm_are_all_answered(start_service, tmp_path):
    started = tmp_path / "started"
    running = start_service({"TEST_SERVICE_HOOKS": "slow", "STARTED_FILE": str(started), "SLOW_SECONDS": "1"},
                            module="hooked_service")
    with connect(address(running)) as client:
        client.sendall(request("/slow") + b"".join(request(f"/hello/p{i}") for i in range(7)))
        deadline = time.monotonic() + 10
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        running.process.send_signal(signal.SIGTERM)
        raw, closed, _ = read_until_closed(client, 10)
    assert closed
    assert raw.count(b"HTTP/1.1 200 OK") == 8
    assert raw.endswith(b"Hello, p6!\",\"environment\":\"development\"}")
    assert running.finish()[0] == 0


def test_the_grace_period_bounds_how_long_a_stop_waits(start_service, tmp_path):
    running, _, _ = start_slow(start_service, tmp_path, SLOW_SECONDS="30", APP_SHUTDOWN_GRACE="0.5")
    code, _, err = running.stop(timeout=20)  # exits within 20 s: not after the 30 s request
    assert_one_request_cut_short(code, err, "the 0.5s grace period")  # the 0.5 s grace, not the 5 s default


def test_a_second_signal_skips_the_rest_of_the_grace_period(start_service, tmp_path):
    running, _, _ = start_slow(start_service, tmp_path, SLOW_SECONDS="30", APP_SHUTDOWN_GRACE="20")
    running.process.send_signal(signal.SIGTERM)
    wait_until(lambda: refuses_connections(running.port), "the drain begun by the first signal")
    code, _, err = running.stop(signal.SIGTERM, timeout=15)  # within 15 s: not the 20 s grace, nor the app
    assert_one_request_cut_short(code, err, "a second stop signal")  # cut by the signal, not by the grace


def assert_one_request_cut_short(code: int, err: str, why: str) -> None:
    """Exit 3; the request named, by what cut it; the count is of requests, not of the idle threads."""
    assert code == 3, err
    assert f"request cut short by {why}, unanswered: 127.0.0.1 GET /slow" in err
    assert "Stopped; 1 request(s) cut short, unanswered (exit status 3)" in err
    assert "thread(s) still running" not in err


def test_a_request_still_being_received_is_not_waited_for(start_service):
    running = start_service({"APP_SHUTDOWN_GRACE": "20"})
    with connect(address(running)) as half:
        half.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        wait_until(lambda: unread_bytes_at_server(half) == 0, "the server read the half-sent request")
        code, _, err = running.stop(timeout=15)  # within 15 s: the 20 s grace is not waited out
    assert code == 0
    assert "Stopped cleanly" in err


# ---- configuration and arguments ---------------------------------------------------------------------

@pytest.mark.parametrize(("variable", "value", "allowed"), [
    ("APP_PORT", "abc", "a whole number from 1 to 65535"),
    ("APP_PORT", "0", "a whole number from 1 to 65535"),
    ("APP_PORT", "70000", "a whole number from 1 to 65535"),
    ("APP_PORT", "50.5", "a whole number from 1 to 65535"),
    ("APP_ENV", "two words", "1 to 64 letters"),
    ("APP_THREADS", "0", "a whole number from 1 to 256"),
    ("APP_RECEIVE_TIMEOUT", "0", "a number of seconds from 0.5 to 300"),
    ("APP_LOG_LEVEL", "LOUD", "one of DEBUG, INFO, WARNING, ERROR"),
])
def test_bad_configuration_exits_2_with_one_line_naming_the_variable(start_service, variable, value, allowed):
    running = start_service({variable: value}, wait=False)
    code, _, err = running.finish()
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith(f"hello-api: configuration error: {variable}={value!r} is not valid: expected ")
    assert allowed in err
    assert "Traceback" not in err


def run_service(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service", *arguments], cwd=ROOT, capture_output=True, text=True,
                          timeout=10, env=service_environment(PYTHONPATH=str(ROOT), **(env or {})))


def test_help_lists_every_variable_with_its_default_and_exits_0():
    result = run_service("--help")
    assert result.returncode == 0
    for variable, default in [("APP_ENV", "development"), ("APP_PORT", "5000"), ("APP_HOST", "*"),
                              ("APP_THREADS", "8"), ("APP_CONNECTION_LIMIT", "1000"), ("APP_CHANNEL_TIMEOUT", "60"),
                              ("APP_RECEIVE_TIMEOUT", "5.0"), ("APP_SHUTDOWN_GRACE", "5.0"),
                              ("APP_LOG_LEVEL", "INFO")]:
        assert re.search(rf"^  {variable} +default {re.escape(default)} ", result.stdout, re.MULTILINE), variable


def test_version_prints_the_version_and_exits_0():
    result = run_service("--version")
    assert (result.returncode, result.stdout) == (0, "hello-api 1.0.0\n")


def test_an_unknown_argument_exits_2_pointing_at_help():
    result = run_service("--port", "80")
    assert result.returncode == 2
    assert result.stderr == ("hello-api: unexpected argument '--port': the service is configured by APP_* "
                             "environment variables only. See --help.\n")


@pytest.mark.parametrize(("arguments", "unexpected"), [
    (["--help", "extra"], "extra"), (["-h", "--version"], "--version"), (["--version", "extra"], "extra"),
    (["extra", "--help"], "extra")])
def test_help_or_version_with_anything_after_it_exits_2_naming_what_was_unexpected(arguments, unexpected):
    result = run_service(*arguments)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith(f"hello-api: unexpected argument {unexpected!r}: ")


def test_a_port_already_in_use_exits_1_with_advice(start_service):
    first = start_service()
    second = start_service({"APP_PORT": str(first.port)}, wait=False)
    code, _, err = second.finish()
    assert code == 1
    assert f"cannot listen on 127.0.0.1 port {first.port}" in err
    assert "choose another APP_PORT" in err
    assert "Traceback" not in err


def test_the_console_script_serves_like_python_m_service(start_service):
    script = shutil.which("hello-api", path=os.pathsep.join([os.path.dirname(sys.executable),
                                                             os.environ.get("PATH", "")]))
    if script is None:
        message = "the hello-api console script is not installed: run pip install -e '.[test]'"
        pytest.fail(message) if in_ci() else pytest.skip(message)
    running = start_service({"APP_ENV": "script"}, command=[script])
    assert requests.get(f"{running.url}/health", timeout=5).json()["environment"] == "script"


def test_app_threads_sets_how_many_worker_threads_waitress_runs(start_service):
    running = start_service({"APP_THREADS": "3"})
    assert len(os.listdir(f"/proc/{running.process.pid}/task")) == 1 + 3  # the event loop and 3 workers


# ---- open files --------------------------------------------------------------------------------------

def limit_open_files(soft: int, hard: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def soft_open_files(pid: int) -> int:
    line = next(line for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
                if line.startswith("Max open files"))
    return int(line.split()[3])


def test_the_soft_open_file_limit_is_raised_to_fit_the_connection_limit(start_service):
    running = start_service(preexec_fn=limit_open_files(256, 4096))
    assert soft_open_files(running.process.pid) == 1000 + 24
    _, _, err = running.stop()
    assert "WARNING" not in err


def test_a_low_hard_limit_shrinks_the_connection_limit_with_one_warning_and_no_flood(start_service):
    running = start_service(preexec_fn=limit_open_files(256, 256))
    held = []
    try:
        for _ in range(300):
            held.append(connect(address(running)))
            held[-1].sendall(b"GET /health HTTP/1.1\r\nX-Slow: ")
        assert exchange(address(running), request("/health", "GET", "Connection: close"), seconds=10).only.status == 200
    finally:
        for connection in held:
            connection.close()
    _, _, err = running.stop()
    warnings = [line for line in err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, err
    assert "APP_CONNECTION_LIMIT=1000 needs 1024 open files, but this process may open 256: serving at most 232" \
        in warnings[0]
    assert len(err) < 2000


# ---- the health check --------------------------------------------------------------------------------

def healthcheck(port: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.healthcheck"], cwd=ROOT, capture_output=True,
                          text=True, timeout=10, env={"APP_PORT": str(port), "PYTHONPATH": str(ROOT)})


def test_a_low_hard_limit_with_2_workers_is_warned_once_and_every_line_gives_the_fitted_limit(start_service):
    running = start_service({"APP_WORKERS": "2"}, preexec_fn=limit_open_files(256, 256))
    _, _, err = running.stop()
    warnings = [line for line in err.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, err
    assert "serving at most 232 connections" in warnings[0]
    assert "each with 8 threads and its own connection limit of 232" in err
    assert err.count("connection_limit=232") == 2, err


def test_healthcheck_exits_0_when_the_server_answers(start_service):
    running = start_service()
    assert healthcheck(running.port).returncode == 0


def test_healthcheck_exits_1_with_a_reason_when_nothing_listens(start_service):
    running = start_service()
    running.stop()
    result = healthcheck(running.port)
    assert result.returncode == 1
    assert result.stderr.startswith("unhealthy: no answer from port")


class FakeHealth(http.server.BaseHTTPRequestHandler):
    status, body = 200, b"{}"

    def do_GET(self):
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(("status", "body", "reason"), [
    (503, b'{"status":"healthy"}', "unhealthy: /health answered 503"),
    (200, b"<html>", "unhealthy: /health answered something that is not a JSON object"),
    (200, b'{"status":"draining"}', "unhealthy: /health says status='draining'"),
])
def test_healthcheck_exits_1_unless_the_answer_is_200_and_healthy(status, body, reason):
    handler = type("Handler", (FakeHealth,), {"status": status, "body": body})
    with http.server.HTTPServer(("127.0.0.1", 0), handler) as fake:
        threading.Thread(target=fake.serve_forever, daemon=True).start()
        try:
            result = healthcheck(fake.server_address[1])
        finally:
            fake.shutdown()
    assert result.returncode == 1
    assert result.stderr.strip() == reason


def test_healthcheck_imports_neither_ssl_nor_the_server():
    """It runs every few seconds and must work in an image without libssl: only the standard library."""
    probe = ("import sys, service.healthcheck as h; h.check(h.config.load({'APP_PORT': '9'})); "
             "print('ssl' in sys.modules, any(m.startswith('waitress') for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=10,
                            env={"PYTHONPATH": str(ROOT)})
    assert result.stdout.strip() == "False False", result.stderr


def test_more_idle_half_sent_requests_than_the_connection_limit_do_not_lock_out_a_new_client(start_service):
    """Twice the connection limit in half-sent requests: waitress stops accepting at its limit, so a new
    client would wait in the backlog for a minute (the receive timeout here); the service closes the
    connection that has waited longest for its request to admit it (HardenedServer.handle_accept)."""
    running = start_service({"APP_CONNECTION_LIMIT": "20", "APP_RECEIVE_TIMEOUT": "60"})
    with held_connections(address(running), 40, HALF_SENT_REQUEST):
        for _ in range(3):  # each admitted in turn, well within the receive timeout
            assert_fresh_client_is_answered(address(running), seconds=5)
