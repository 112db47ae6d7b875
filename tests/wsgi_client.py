"""Call a WSGI app in-process, the way waitress would, through wsgiref's PEP 3333 validator."""

import io
import json
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator


@dataclass
class Result:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        return json.loads(self.body.decode("utf-8"))


def call(app, method: str = "GET", target: str = "/") -> Result:
    """`target` is what a client puts on the request line. The split and percent-decoding here follow PEP 3333;
    that waitress itself does the same is proven over a socket in test_hardening.py."""
    raw_path, _, query = target.partition("?")
    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        # PEP 3333: the percent-decoded path bytes, carried in a latin-1 str.
        "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(),
        "wsgi.errors": io.StringIO(),
    }
    setup_testing_defaults(environ)
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers

    chunks = validator(app)(environ, start_response)
    try:
        body = b"".join(chunks)
    finally:
        chunks.close()
    return Result(int(seen["status"][:3]), dict(seen["headers"]), body)
