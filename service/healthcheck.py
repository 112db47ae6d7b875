"""`python -m service.healthcheck`: exit 0 when the local server answers /health, 1 otherwise.

Standard library only, so the shell-less distroless image can use it as its HEALTHCHECK.
"""

import http.client
import json
import os
import sys

from . import config

TIMEOUT_SECONDS = 2.0


def probe_address(settings: config.Settings) -> str:
    """Where to reach the server from inside its own container: loopback unless bound elsewhere."""
    if settings.host in ("*", "0.0.0.0"):
        return "127.0.0.1"
    if settings.host == "::":
        return "::1"
    return settings.host


def check(settings: config.Settings) -> str | None:
    """None when healthy, else what went wrong."""
    connection = http.client.HTTPConnection(probe_address(settings), settings.port,
                                            timeout=TIMEOUT_SECONDS)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        body = response.read()
    except OSError as problem:
        return f"no answer from port {settings.port}: {problem}"
    finally:
        connection.close()
    if response.status != 200:
        return f"/health answered {response.status}"
    try:
        status = json.loads(body).get("status")
    except ValueError:
        return "/health answered something that is not JSON"
    return None if status == "healthy" else f"/health says status={status!r}"


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
