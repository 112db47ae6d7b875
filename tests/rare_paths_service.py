"""The real server with two test hooks, for the rare-path tests in every image (tests/test_micro.py):
/raise raises inside the app's dispatch (the 500 answer and its logged traceback), /slow takes
SLOW_SECONDS (a request in flight when a stop signal comes).

It imports nothing the service does not import itself, so it also runs in the micro image, which keeps
only those modules (tests/slow_service.py imports pathlib, which micro leaves out).
"""

import os
import sys
import time

from service import app, server

FAILING_PATH = "/raise"
SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "1.0"))
dispatch = app.dispatch


def failing_dispatch(environ: dict, environment: str) -> object:
    if environ.get("PATH_INFO") == FAILING_PATH:
        raise RuntimeError("deliberate failure for the 500 test")
    return dispatch(environ, environment)


def with_slow_path(wsgi_app: app.WSGIApp) -> app.WSGIApp:
    def wrapped(environ: dict, start_response: app.StartResponse) -> list[bytes]:
        if environ["PATH_INFO"] != "/slow":
            return wsgi_app(environ, start_response)
        time.sleep(SLOW_SECONDS)
        body = b'{"slow":"done"}'
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]
    return wrapped


if __name__ == "__main__":
    app.dispatch = failing_dispatch
    create_app = server.create_app
    server.create_app = lambda environment: with_slow_path(create_app(environment))
    sys.exit(server.main())
