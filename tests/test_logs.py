"""APP_LOG_FORMAT: every line the service writes, text or JSON, stamped in UTC with its zone, one write each."""

import datetime
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time

import requests
from conftest import ROOT
from raw_http import connect, exchange, request

from service import logs

UTC_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
EVERY_LINE_FIELDS = {"time", "level", "logger", "message"}
ACCESS_FIELDS = EVERY_LINE_FIELDS | {"client", "method", "target", "status", "duration_ms"}


def json_lines(text: str) -> list[dict]:
    """Every line parsed as one JSON object (json.loads fails on a line that is not one)."""
    entries = [json.loads(line) for line in text.splitlines()]
    for entry in entries:
        assert set(entry) >= EVERY_LINE_FIELDS, entry
        assert UTC_STAMP.fullmatch(entry["time"]), entry
    return entries


def address(running) -> tuple[str, int]:
    return ("127.0.0.1", running.port)


def test_json_format_writes_every_line_as_one_object_with_the_documented_fields(start_service):
    running = start_service({"APP_LOG_FORMAT": "json", "APP_PROT": "1"})
    requests.get(f"{running.url}/hello/J%C3%BCrgen?x=1", timeout=5)
    exchange(address(running), b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n")  # the server's own 400
    code, out, err = running.stop()
    assert code == 0
    access = json_lines(out)
    assert all(set(entry) == ACCESS_FIELDS and entry["logger"] == "access" for entry in access), access
    hello = next(entry for entry in access if entry["target"].startswith("/hello/"))
    assert hello.items() >= {"level": "INFO", "client": "127.0.0.1", "method": "GET", "status": 200,
                             "target": "/hello/J%C3%BCrgen?x=1", "message": "GET /hello/J%C3%BCrgen?x=1 200"}.items()
    assert isinstance(hello["duration_ms"], float)
    assert [entry["status"] for entry in access if entry["target"] == "/a"] == [400]
    others = json_lines(err)
    assert [e["logger"] for e in others] == ["service", "service.lifecycle", "service.lifecycle",
                                             "service.lifecycle"], others
    assert others[0]["level"] == "WARNING" and others[0]["message"].startswith("APP_PROT is not a setting")
    assert others[1]["message"].startswith("hello-api 1.0.0 serving environment=development on ")


def test_a_traceback_stays_inside_its_one_json_line(start_service):
    running = start_service({"TEST_SERVICE_HOOKS": "broken_health", "APP_LOG_FORMAT": "json"},
                            module="hooked_service", wait=False)
    with connect_when_listening(address(running)) as client:
        client.sendall(request("/health", "GET", "Connection: close"))
        assert client.recv(4096).startswith(b"HTTP/1.1 500 ")
    _, out, err = running.stop()
    failed = [entry for entry in json_lines(err) if "traceback" in entry]
    assert len(failed) == 1, err
    assert failed[0]["level"] == "ERROR"
    assert failed[0]["traceback"].startswith("Traceback (most recent call last):")
    assert failed[0]["traceback"].rstrip().endswith("RuntimeError: secret internal detail")
    assert json_lines(out)[0]["status"] == 500


def connect_when_listening(where: tuple[str, int], seconds: float = 15.0) -> socket.socket:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return connect(where, timeout=10)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def test_lines_from_many_concurrent_requests_in_two_workers_never_interleave(start_service, tmp_path):
    access_log = tmp_path / "stdout"
    running = start_service({"APP_LOG_FORMAT": "json", "APP_WORKERS": "2", "APP_THREADS": "4"},
                            stdout_file=access_log)
    answered = []

    def client(number: int) -> None:
        with requests.Session() as session:
            for i in range(40):
                long_target = f"/hello/{number}-{i}-" + "x" * 90 + "?" + "q" * 400  # long lines: more to interleave
                answered.append(session.get(f"{running.url}{long_target}", timeout=10).status_code)

    clients = [threading.Thread(target=client, args=(n,)) for n in range(12)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join()
    _, _, err = running.stop()
    access = [entry for entry in json_lines(access_log.read_text()) if entry["target"] != "/health"]
    assert len(access) == len(answered) == 480
    assert {entry["worker"] for entry in json_lines(err) if "worker" in entry} == {1, 2}
    assert all({"pid", "worker"} <= set(entry) for entry in access)


def test_text_format_stamps_every_line_in_utc_with_its_zone_whatever_the_local_zone(start_service):
    running = start_service({"TZ": "Asia/Tokyo"})  # UTC+9: a local stamp would be 9 hours off
    requests.get(f"{running.url}/hello/zone", timeout=5)
    _, out, err = running.stop()
    now = datetime.datetime.now(datetime.UTC)
    for line in [*out.splitlines(), *err.splitlines()]:
        stamp = UTC_STAMP.match(line)
        assert stamp, line
        written = datetime.datetime.strptime(stamp[0], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
        assert abs(now - written) < datetime.timedelta(hours=1), line  # not local time: a zone is hours


def test_a_configuration_error_in_json_format_is_one_json_line(start_service):
    running = start_service({"APP_LOG_FORMAT": "json", "APP_PORT": "abc"}, wait=False)
    code, _, err = running.finish()
    assert code == 2
    [entry] = json_lines(err)
    assert entry["level"] == "ERROR"
    assert entry["message"].startswith("configuration error: APP_PORT='abc' is not valid")


def test_the_utc_stamp_has_milliseconds_and_the_zone():
    assert logs.utc_timestamp(0.0735) == "1970-01-01T00:00:00.073Z"
    assert logs.utc_timestamp(1796156187.5) == "2026-12-01T20:16:27.500Z"


def test_a_record_with_a_traceback_formats_as_one_json_line():
    try:
        raise ValueError("one\ntwo")
    except ValueError:
        record = logging.LogRecord("service", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    line = logs.JSONFormatter().format(record)
    assert line.endswith("\n") and line.count("\n") == 1
    entry = json.loads(line)
    assert entry["message"] == "failed here"
    assert "ValueError: one\ntwo" in entry["traceback"]


def test_a_line_longer_than_one_pipe_write_is_written_whole(monkeypatch):
    written = []

    def short_write(descriptor: int, data: bytes) -> int:
        written.append(bytes(data[:100]))
        return min(len(data), 100)

    monkeypatch.setattr(logs.os, "write", short_write)
    logs.write_line("x" * 250 + "\n")
    assert b"".join(written) == b"x" * 250 + b"\n"


def test_the_help_names_every_json_field():
    result = subprocess.run([sys.executable, "-m", "service", "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=10)
    for field in [*sorted(ACCESS_FIELDS), "traceback", "pid", "worker"]:
        assert re.search(rf"\b{field}\b", result.stdout.split("Logs:")[1]), field
