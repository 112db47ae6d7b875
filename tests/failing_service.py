"""The real server, with the app's dispatch raising for /raise: the 500 answer and its logged traceback,
end to end. Mounted into the images by tests/test_micro.py."""

import sys

from service import app, server

FAILING_PATH = "/raise"
dispatch = app.dispatch


def failing_dispatch(environ: dict, environment: str) -> object:
    if environ.get("PATH_INFO") == FAILING_PATH:
        raise RuntimeError("deliberate failure for the 500 test")
    return dispatch(environ, environment)


if __name__ == "__main__":
    app.dispatch = failing_dispatch
    sys.exit(server.main())
