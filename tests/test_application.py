"""APP_WSGI: the hardened server, its configuration, logs, signals, workers and health check around any WSGI
app, and one clear line (exit 2) for a name it cannot serve."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from conftest import ROOT, service_environment
from support import free_port

from service import application, config

APPS = {
    "plainapp.py": '''
def app(environ, start_response):
    if environ["PATH_INFO"] == "/ready":
        start_response("204 No Content", [])
        return []
    if environ["PATH_INFO"] != "/":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"none here"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"plain app"]


def make():
    return app


def failing_factory():
    raise LookupError("no settings file")


class Holder:
    app = staticmethod(app)


holder = Holder()
NUMBER = 3
''',
    "needsdep.py": "import a_package_nobody_installed  # noqa\napp = None\n",
    "broken.py": 'raise RuntimeError("no database at import")\n',
}


@pytest.fixture
def apps(tmp_path) -> Path:
    for name, text in APPS.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def app_environment(apps: Path, **settings: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(ROOT), str(apps)]), **settings}


@pytest.mark.parametrize("name", ["plainapp:app", "plainapp:make()", "plainapp:holder.app"])
def test_the_app_app_wsgi_names_is_served_behind_the_same_transport(start_service, apps, name):
    running = start_service(app_environment(apps, APP_WSGI=name), wait=False)
    answer = wait_for(lambda: requests.get(f"{running.url}/", timeout=2))
    assert (answer.status_code, answer.text) == (200, "plain app")
    assert requests.get(f"{running.url}/elsewhere", timeout=2).status_code == 404
    with socket.create_connection(("127.0.0.1", running.port), timeout=5) as client:  # the transport refuses
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        refusal = client.recv(65536)
    assert refusal.startswith(b"HTTP/1.1 400 ") and b'"error":' in refusal and b"application/json" in refusal
    code, out, err = running.stop()
    assert code == 0
    assert f"serving APP_WSGI={name} on " in err
    assert '"GET / HTTP/1.1" 200' in out or " GET / 200 " in out, out


def wait_for(request, seconds: float = 15.0) -> requests.Response:
    """The first answer the server gives (it is starting)."""
    import time

    deadline = time.monotonic() + seconds
    while True:
        try:
            return request()
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_two_workers_serve_the_app_loaded_once_before_they_are_forked(start_service, apps):
    running = start_service(app_environment(apps, APP_WSGI="plainapp:app", APP_WORKERS="2"), wait=False)
    assert wait_for(lambda: requests.get(f"{running.url}/", timeout=2)).text == "plain app"
    code, _, err = running.stop()
    assert code == 0 and err.count("serving APP_WSGI=plainapp:app on ") == 2, err


@pytest.mark.parametrize(("name", "said"), [
    ("nosuchmodule:app", "APP_WSGI=nosuchmodule:app: no module 'nosuchmodule' on the path"),
    ("plainapp.sub:app", "no module 'plainapp.sub' on the path"),
    ("needsdep:app", "importing needsdep needs 'a_package_nobody_installed', which is not installed"),
    ("plainapp:missing", "has no 'missing': name the object that is the app"),
    ("plainapp:holder.nothing", "has no 'nothing'"),
    ("plainapp:NUMBER", "APP_WSGI=plainapp:NUMBER is a int, not a WSGI app"),
    ("plainapp:NUMBER()", "int cannot be called: drop the ()"),
    ("broken:app", "importing broken raised RuntimeError: no database at import ("),
    ("plainapp:failing_factory()", "the factory raised LookupError: no settings file ("),
    ("plainapp", "APP_WSGI='plainapp' is not valid: expected MODULE:NAME, or MODULE:FACTORY()"),
    ("plainapp:app;rm", "APP_WSGI='plainapp:app;rm' is not valid"),
])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_app_that_cannot_be_served_stops_start_up_with_one_line_and_exit_2(apps, name, said, workers):
    result = subprocess.run([sys.executable, "-m", "service"], cwd=ROOT, capture_output=True, text=True, timeout=30,
                            env=service_environment(**app_environment(apps, APP_WSGI=name, APP_WORKERS=workers,
                                                                      APP_PORT=str(free_port()))))
    assert result.returncode == 2, result.stderr
    assert said in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr


def test_the_line_for_an_import_that_raised_names_the_file_and_line(apps, monkeypatch):
    monkeypatch.syspath_prepend(str(apps))
    with pytest.raises(application.ApplicationError, match=r"broken\.py:1\)$"):
        application.load(config.Settings(wsgi="broken:app"))


def healthcheck(port: int, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "service.healthcheck"], cwd=ROOT, capture_output=True, text=True,
                          timeout=10, env={"APP_PORT": str(port), "PYTHONPATH": str(ROOT), **settings})


def test_the_health_check_of_another_app_gets_app_health_path_and_takes_any_2xx(start_service, apps):
    running = start_service(app_environment(apps, APP_WSGI="plainapp:app"), wait=False)
    wait_for(lambda: requests.get(f"{running.url}/", timeout=2))
    ready = healthcheck(running.port, APP_WSGI="plainapp:app", APP_HEALTH_PATH="/ready")  # 204
    assert ready.returncode == 0, ready.stderr
    default = healthcheck(running.port, APP_WSGI="plainapp:app")  # this app has no /health
    assert default.returncode == 1 and "unhealthy: /health answered 404" in default.stderr
    as_hello_api = healthcheck(running.port, APP_HEALTH_PATH="/")  # hello-api's contract: a JSON object
    assert as_hello_api.returncode == 1 and "/ answered something that is not a JSON object" in as_hello_api.stderr
    code, out, _ = running.stop()
    assert code == 0 and "/ready" not in out  # the health check's requests stay out of the access log


def test_a_health_path_must_be_a_path():
    for bad in ("health", "/a b", "", "/" + "x" * 256):
        with pytest.raises(config.ConfigError, match="APP_HEALTH_PATH"):
            config.load({"APP_HEALTH_PATH": bad})
    assert config.load({"APP_HEALTH_PATH": "/-/ready?full=1"}).health_path == "/-/ready?full=1"
