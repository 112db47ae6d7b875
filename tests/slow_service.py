"""The real server around the real app, plus test hooks: /slow takes SLOW_SECONDS (touching STARTED_FILE
first, so a test knows the request is in), and with BOOM set, /health raises inside the app."""

import os
import sys
import time
from pathlib import Path

from service import app as app_module
from service import server
from service.app import create_app

SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "1.0"))


def slow_app(app):
    def wrapped(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            if os.environ.get("STARTED_FILE"):
                Path(os.environ["STARTED_FILE"]).touch()
            time.sleep(SLOW_SECONDS)
            body = b'{"slow":"done"}'
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)
    return wrapped


def broken_health(environment):
    raise RuntimeError("secret internal detail")


if __name__ == "__main__":
    if os.environ.get("BOOM"):
        app_module.health = broken_health
    server.create_app = lambda environment: slow_app(create_app(environment))
    sys.exit(server.main())
