"""`python -m service` as a real process: HTTP on a socket, configuration, logs, signals, hostile clients."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
from conftest import ROOT

from service import __version__


def test_serves_health_and_hello_over_http(start_service):
    running = start_service({"APP_ENV": "production"})
    health = requests.get(f"{running.url}/health", timeout=5)
    assert health.json() == {"status": "healthy", "environment": "production"}
    assert health.headers["Content-Type"] == "application/json; charset=utf-8"
    hello = requests.get(f"{running.url}/hello/J%C3%BCrgen", timeout=5)
    assert hello.json() == {"message": "Hello, Jürgen!", "environment": "production"}


def test_unknown_paths_and_methods_answer_json_over_http(start_service):
    running = start_service()
    assert requests.get(f"{running.url}/nope", timeout=5).json()["error"] == "not_found"
    refused = requests.delete(f"{running.url}/health", timeout=5)
    assert (refused.status_code, refused.headers["Allow"]) == (405, "GET, HEAD")


def test_head_answers_headers_only_over_http(start_service):
    running = start_service()
    head = requests.head(f"{running.url}/hello/World", timeout=5)
    assert head.status_code == 200
    assert head.content == b""
    assert int(head.headers["Content-Length"]) == len(requests.get(f"{running.url}/hello/World").content)


def test_no_server_header_advertises_the_software(start_service):
    running = start_service()
    assert "Server" not in requests.get(f"{running.url}/health", timeout=5).headers


def test_access_log_has_a_line_per_request_on_stdout_and_startup_on_stderr(start_service):
    running = start_service({"APP_ENV": "staging"})
    requests.get(f"{running.url}/hello/J%C3%BCrgen", timeout=5)
    requests.post(f"{running.url}/health", timeout=5)
    code, out, err = running.stop()
    assert code == 0
    assert " GET /hello/J%C3%BCrgen 200 " in out
    assert " POST /health 405 " in out
    assert f"hello-api {__version__} serving environment=staging on http://127.0.0.1:{running.port}" in err


def test_a_crafted_path_cannot_forge_an_access_log_line(start_service):
    running = start_service()
    requests.get(f"{running.url}/hello/a%0DFORGED%0AFORGED%20GET%20admin", timeout=5)
    _, out, _ = running.stop()
    assert "GET /hello/a%0DFORGED%0AFORGED%20GET%20admin 200 " in out
    assert not any(line.startswith("FORGED") for line in out.splitlines())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_the_server_promptly_with_exit_0(start_service, signum):
    running = start_service()
    requests.get(f"{running.url}/health", timeout=5)  # leaves an idle keep-alive connection behind
    code, _, err = running.stop(signum, timeout=5)
    assert code == 0
    assert "Stopped cleanly" in err
    assert "Traceback" not in err


def test_a_request_in_flight_at_sigterm_completes_and_new_connections_are_refused(start_service):
    running = start_service({"SLOW_SECONDS": "2.0"}, module="slow_service")
    answers = []
    slow = threading.Thread(target=lambda: answers.append(requests.get(f"{running.url}/slow", timeout=10)))
    slow.start()
    time.sleep(0.6)  # the request is received and being answered; the answer takes 2 s
    running.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{running.url}/health", timeout=2)
    slow.join(timeout=10)
    code, _, err = running.finish()
    assert answers and answers[0].status_code == 200
    assert answers[0].json() == {"slow": "done"}
    assert code == 0
    assert "Stopped cleanly" in err


def test_the_grace_period_bounds_how_long_a_stop_waits(start_service):
    running = start_service({"SLOW_SECONDS": "30", "APP_SHUTDOWN_GRACE": "0.5"}, module="slow_service")
    threading.Thread(target=lambda: _swallow(requests.get, f"{running.url}/slow", timeout=40),
                     daemon=True).start()
    time.sleep(0.3)
    code, _, err = running.stop(timeout=10)  # would take 30 s if the grace period were ignored
    assert code == 0
    assert "1 connection(s) cut at the grace limit" in err


def _swallow(function, *args, **kwargs):
    with contextlib.suppress(requests.RequestException):
        function(*args, **kwargs)


@pytest.mark.parametrize(("variable", "value", "allowed"), [
    ("APP_PORT", "abc", "a whole number from 1 to 65535"),
    ("APP_PORT", "0", "a whole number from 1 to 65535"),
    ("APP_PORT", "70000", "a whole number from 1 to 65535"),
    ("APP_PORT", "50.5", "a whole number from 1 to 65535"),
    ("APP_ENV", "two words", "1 to 64 letters"),
    ("APP_THREADS", "0", "a whole number from 1 to 256"),
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
        if os.environ.get("CI") == "true":
            pytest.fail("the hello-api console script is not installed: run pip install -e '.[test]'")
        pytest.skip("the hello-api console script is not installed: run pip install -e '.[test]'")
    running = start_service({"APP_ENV": "script"}, command=[script])
    assert requests.get(f"{running.url}/health", timeout=5).json()["environment"] == "script"


def healthcheck(port: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.healthcheck"], cwd=ROOT, capture_output=True,
                          text=True, timeout=10, env={"APP_PORT": str(port), "PYTHONPATH": str(ROOT)})


def test_healthcheck_exits_0_when_the_server_answers(start_service):
    running = start_service()
    assert healthcheck(running.port).returncode == 0


def test_healthcheck_exits_1_with_a_reason_when_nothing_listens(start_service):
    running = start_service()
    running.stop()
    result = healthcheck(running.port)
    assert result.returncode == 1
    assert result.stderr.startswith("unhealthy: no answer from port")


def test_hundreds_of_idle_half_sent_requests_do_not_lock_out_a_new_client(start_service):
    running = start_service()
    idle = []
    try:
        for _ in range(400):
            connection = socket.create_connection(("127.0.0.1", running.port), timeout=5)
            connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finished
            idle.append(connection)
        assert requests.get(f"{running.url}/health", timeout=5).status_code == 200
    finally:
        for connection in idle:
            connection.close()


def test_oversized_headers_get_431_and_the_server_keeps_serving(start_service):
    running = start_service()
    answer = requests.get(f"{running.url}/health", headers={"X-Big": "x" * 20_000}, timeout=5)
    assert answer.status_code == 431
    assert requests.get(f"{running.url}/health", timeout=5).status_code == 200
