"""The real server around an app whose /slow takes SLOW_SECONDS: lets tests catch requests in flight."""

import os
import sys
import time

from service import server
from service.app import create_app

SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "1.0"))


def slow_app(app):
    def wrapped(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            time.sleep(SLOW_SECONDS)
            body = b'{"slow":"done"}'
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)
    return wrapped


if __name__ == "__main__":
    server.create_app = lambda environment: slow_app(create_app(environment))
    sys.exit(server.main())
