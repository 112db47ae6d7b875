"""`python -m service.healthcheck`: exit 0 when the local server answers APP_HEALTH_PATH (default /health)
healthily, 1 otherwise. Healthy is hello-api's own answer (200, JSON, status "healthy") when the server serves
hello-api, and any 2xx when it serves the app APP_WSGI names, whose health path is its own to choose.

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


def fetch_health(host: str, port: int, path: str = "/health") -> bytes:
    """The raw answer to GET `path`, read until the server closes (the request asks it to)."""
    request = (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: {HEALTHCHECK_AGENT}\r\n"
               "Connection: close\r\n\r\n").encode()
    with socket.create_connection((host, port), timeout=TIMEOUT_SECONDS) as connection:
        connection.sendall(request)
        answer = b""
        while len(answer) < MAX_ANSWER_BYTES and (chunk := connection.recv(8192)):
            answer += chunk
    return answer


def verdict(answer: bytes, path: str = "/health", hello_api: bool = True) -> str | None:
    """None when healthy (hello-api: 200 with status "healthy"; another app: any 2xx), else what went wrong."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        return f"{path} answered something that is not HTTP: {status_line[:80]!r}"
    if not hello_api:
        return None if len(parts[1]) == 3 and parts[1].startswith("2") else f"{path} answered {parts[1]}"
    if parts[1] != "200":
        return f"{path} answered {parts[1]}"
    try:
        status = json.loads(body).get("status")
    except (ValueError, AttributeError):
        return f"{path} answered something that is not a JSON object"
    return None if status == "healthy" else f"{path} says status={status!r}"


def check(settings: config.Settings) -> str | None:
    """None when healthy, else what went wrong."""
    try:
        answer = fetch_health(probe_address(settings), settings.port, settings.health_path)
    except OSError as problem:
        return f"no answer from port {settings.port}: {problem}"
    return verdict(answer, settings.health_path, hello_api=not settings.wsgi)


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
