"""The HTTP API as a WSGI callable: explicit routing, JSON in every answer."""

import logging
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from .answers import INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE, JSON_HEADERS, encode, error_payload

MAX_NAME_LENGTH = 100  # characters, after percent-decoding
ALLOWED_METHODS = "GET, HEAD"

STATUS_LINES = {
    200: "200 OK",
    400: "400 Bad Request",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    500: "500 Internal Server Error",
}

log = logging.getLogger("service.app")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict, StartResponse], Iterable[bytes]]
Answer = tuple[int, dict[str, str], list[tuple[str, str]]]  # status, JSON payload, extra headers


def health(environment: str) -> Answer:
    return 200, {"status": "healthy", "environment": environment}, []


def hello(name: str, environment: str) -> Answer:
    if len(name) > MAX_NAME_LENGTH:
        return error(400, "name_too_long", f"The name has {len(name)} characters; "
                     f"send at most {MAX_NAME_LENGTH}.")
    return 200, {"message": f"Hello, {name}!", "environment": environment}, []


def error(status: int, code: str, message: str) -> Answer:
    return status, error_payload(code, message), []


def not_found(path: str) -> Answer:
    return error(404, "not_found", f"No resource at {path}. "
                 "Try GET /health or GET /hello/<name> (one path segment).")


def method_not_allowed(method: str) -> Answer:
    status, payload, _ = error(405, "method_not_allowed",
                               f"{method} is not supported here; use GET or HEAD.")
    return status, payload, [("Allow", ALLOWED_METHODS)]


def decode_path(environ: dict) -> str | None:
    """PATH_INFO as real text: PEP 3333 hands it over as latin-1-decoded bytes."""
    try:
        return environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None


def hello_name(path: str) -> str | None:
    """The <name> of /hello/<name>, or None when the path is not exactly that shape."""
    if not path.startswith("/hello/"):
        return None
    name = path[len("/hello/"):]
    return name if name and "/" not in name else None


def route(method: str, path: str, environment: str) -> Answer:
    if path == "/health":
        answer = partial(health, environment)
    elif (name := hello_name(path)) is not None:
        answer = partial(hello, name, environment)
    else:
        return not_found(path)
    if method not in ("GET", "HEAD"):
        return method_not_allowed(method)
    return answer()


def dispatch(environ: dict, environment: str) -> Answer:
    path = decode_path(environ)
    if path is None:
        return error(400, "bad_path", "The path is not valid UTF-8 once percent-decoded; "
                     "percent-encode the name's UTF-8 bytes.")
    return route(environ["REQUEST_METHOD"], path, environment)


def create_app(environment: str) -> WSGIApp:
    """Build the WSGI callable; `environment` is echoed in every successful answer."""

    def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        try:
            status, payload, extra_headers = dispatch(environ, environment)
        except Exception:  # the traceback goes to the server log, never to the client
            log.exception("Unhandled error answering %s %r",
                          environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            status, payload, extra_headers = error(500, INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE)
        body = encode(payload)
        start_response(STATUS_LINES[status],
                       [*JSON_HEADERS, ("Content-Length", str(len(body))), *extra_headers])
        return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]

    return app
