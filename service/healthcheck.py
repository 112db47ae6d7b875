"""`python -m service.healthcheck`: exit 0 when the local server answers /health, 1 otherwise.

Speaks HTTP/1.1 over a plain socket: no shell or curl is needed (distroless has neither), and unlike
http.client it never imports ssl, so an image may leave out libssl and libcrypto.
"""

import json
import os
import socket
import sys

from . import config

HEALTHCHECK_AGENT = "hello-api-healthcheck"  # the server leaves requests from loopback with it out of its log
TIMEOUT_SECONDS = 2.0
MAX_ANSWER_BYTES = 64 * 1024


def probe_address(settings: config.Settings) -> str:
    """Where to reach the server from inside its own container: loopback unless bound elsewhere."""
    if settings.host in ("*", "0.0.0.0"):
        return "127.0.0.1"
    if settings.host == "::":
        return "::1"
    return settings.host


def fetch_health(host: str, port: int) -> bytes:
    """The raw answer to GET /health, read until the server closes (the request asks it to)."""
    request = (f"GET /health HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {HEALTHCHECK_AGENT}\r\n"
               "Connection: close\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=TIMEOUT_SECONDS) as connection:
        connection.sendall(request)
        answer = b""
        while len(answer) < MAX_ANSWER_BYTES and (chunk := connection.recv(8192)):
            answer += chunk
    return answer


def verdict(answer: bytes) -> str | None:
    """None when the answer is 200 with status "healthy", else what went wrong."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        return f"/health answered something that is not HTTP: {status_line[:80]!r}"
    if parts[1] != "200":
        return f"/health answered {parts[1]}"
    try:
        status = json.loads(body).get("status")
    except (ValueError, AttributeError):
        return "/health answered something that is not a JSON object"
    return None if status == "healthy" else f"/health says status={status!r}"


def check(settings: config.Settings) -> str | None:
    """None when healthy, else what went wrong."""
    try:
        answer = fetch_health(probe_address(settings), settings.port)
    except OSError as problem:
        return f"no answer from port {settings.port}: {problem}"
    return verdict(answer)


def main() -> int:
    try:
        settings = config.load(os.environ)
    except config.ConfigError as problem:
        print(f"unhealthy: configuration error: {problem}", file=sys.stderr)
        return 1
    problem = check(settings)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
