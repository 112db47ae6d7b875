"""The WSGI callable, in-process: every route, every error family, every header."""

import json

import pytest
from wsgi_client import call

from service import app as app_module
from service.app import create_app

app = create_app("testing")
NAME_LIMIT = 100  # characters, as the README promises


def test_health_reports_healthy_and_the_environment():
    result = call(app, "GET", "/health")
    assert result.status == 200
    assert result.json() == {"status": "healthy", "environment": "testing"}


def test_hello_greets_the_name_with_the_tutorials_message():
    result = call(app, "GET", "/hello/World")
    assert result.status == 200
    assert result.json() == {"message": "Hello, World!", "environment": "testing"}


@pytest.mark.parametrize(("target", "name"), [
    ("/hello/J%C3%BCrgen", "Jürgen"),
    ("/hello/Ren%C3%A9e%20O'Brien", "Renée O'Brien"),
    ("/hello/%22quoted%22", '"quoted"'),
    ("/hello/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E", "<img src=x onerror=alert(1)>"),
    ("/hello/back%5Cslash", "back\\slash"),
    ("/hello/%F0%9F%91%8B", "\N{WAVING HAND SIGN}"),
    ("/hello/%E4%BD%A0%E5%A5%BD", "你好"),
    ("/hello/tab%09and%0Anewline", "tab\tand\nnewline"),
])
def test_hello_percent_decodes_utf8_and_escapes_json(target, name):
    result = call(app, "GET", target)
    assert result.status == 200
    assert result.json() == {"message": f"Hello, {name}!", "environment": "testing"}
    assert result.headers["Content-Type"] == "application/json; charset=utf-8"  # never rendered as HTML


def test_hello_accepts_a_name_of_exactly_the_limit():
    result = call(app, "GET", "/hello/" + "a" * NAME_LIMIT)
    assert result.status == 200
    assert result.json()["message"] == f"Hello, {'a' * NAME_LIMIT}!"


def test_hello_counts_characters_not_bytes_for_the_limit():
    result = call(app, "GET", "/hello/" + "%C3%BC" * NAME_LIMIT)
    assert result.json()["message"] == f"Hello, {'ü' * NAME_LIMIT}!"


def test_hello_rejects_a_name_over_the_limit_with_400_saying_the_limit():
    result = call(app, "GET", "/hello/" + "a" * (NAME_LIMIT + 1))
    assert result.status == 400
    assert result.json() == {"error": "name_too_long",
                             "message": f"The name has {NAME_LIMIT + 1} characters; send at most {NAME_LIMIT}."}


@pytest.mark.parametrize("target", [
    "/", "/nope", "/health/", "/healthz", "/hello", "/hello/", "/hello/a/b", "/hello/a/",
    "//health", "/HEALTH", "/hello//x", "/hello/a%2Fb", "/hello/%3Cscript%3E%3C%2Fscript%3E",
])
def test_unknown_paths_answer_json_404_with_a_hint(target):
    result = call(app, "GET", target)
    assert result.status == 404
    assert result.json()["error"] == "not_found"
    assert "/hello/<name>" in result.json()["message"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "BREW"])
@pytest.mark.parametrize("target", ["/health", "/hello/World"])
def test_other_methods_answer_405_with_an_allow_header(method, target):
    result = call(app, method, target)
    assert result.status == 405
    assert result.headers["Allow"] == "GET, HEAD"
    assert result.json()["error"] == "method_not_allowed"


def test_other_methods_on_unknown_paths_are_404_not_405():
    result = call(app, "POST", "/nope")
    assert result.status == 404
    assert result.json()["error"] == "not_found"
    assert "Allow" not in result.headers


@pytest.mark.parametrize("target", ["/hello/%FF", "/hello/%C3", "/%80health", "/hello/%ED%A0%80"])
def test_paths_that_are_not_utf8_answer_json_400(target):
    result = call(app, "GET", target)
    assert result.status == 400
    assert result.json()["error"] == "bad_path"


@pytest.mark.parametrize("target", ["/health", "/hello/World", "/nope"])
def test_head_has_the_get_status_and_headers_and_no_body(target):
    get, head = call(app, "GET", target), call(app, "HEAD", target)
    assert head.status == get.status
    assert head.headers == get.headers
    assert head.body == b""


@pytest.mark.parametrize("target", ["/health", "/hello/J%C3%BCrgen", "/nope", "/hello/%FF"])
def test_every_answer_carries_json_type_length_nosniff_and_no_store(target):
    result = call(app, "GET", target)
    assert result.headers["Content-Type"] == "application/json; charset=utf-8"
    assert int(result.headers["Content-Length"]) == len(result.body)
    assert result.headers["X-Content-Type-Options"] == "nosniff"
    assert result.headers["Cache-Control"] == "no-store"
    assert isinstance(json.loads(result.body), dict)


def test_the_query_string_is_not_read():
    result = call(app, "GET", "/hello/World?name=Mallory&x=%FF")
    assert result.json() == {"message": "Hello, World!", "environment": "testing"}


def test_an_unexpected_exception_becomes_json_500_and_the_traceback_is_only_logged(monkeypatch, caplog):
    def broken(environment):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(app_module, "health", broken)
    result = call(app, "GET", "/health")
    assert result.status == 500
    assert result.json()["error"] == "internal_error"
    assert b"secret internal detail" not in result.body
    assert b"Traceback" not in result.body
    assert "secret internal detail" in caplog.text
    assert "Traceback" in caplog.text


def test_the_environment_given_to_create_app_is_echoed():
    assert call(create_app("production"), "GET", "/health").json()["environment"] == "production"
