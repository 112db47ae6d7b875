"""The real server, `python -m hooked_service`, with the test hooks TEST_SERVICE_HOOKS names (comma-separated):

- slow: /slow takes SLOW_SECONDS (default 1), first creating STARTED_FILE when set, so a test knows the
  request is in (a request in flight when a stop signal comes);
- failing_path: /raise raises inside the app's dispatch (the 500 answer and its logged traceback);
- broken_health: /health raises inside the app;
- failing_worker: building the app fails in every forked worker, not in the supervisor (a worker that cannot
  start);
- slow_start_worker: each forked worker, before it builds its app, creates START_DIR/starting-PID and waits
  until START_DIR/go exists (a test can kill the supervisor while workers start);
- fault_injecting: a fault injected into one path of the transport (FAULT_IN names it, PATHS lists them) for
  the connections that send FAULT_MARKER; every other connection is served as usual. A connection is marked
  when bytes it sends hold the marker; from then on the chosen path raises InjectedFault for it.

It imports nothing the service does not import itself, so it also runs in the micro image, which keeps only
those modules (pathlib is not one: files are made with open).
"""

import os
import sys
import time
from collections.abc import Callable

from service import app, application, server
from service.transport.channel import HardenedChannel

HOOKS_VARIABLE = "TEST_SERVICE_HOOKS"
FAILING_PATH = "/raise"
FAULT_MARKER = b"X-Inject-Fault"
SLOW_SECONDS = float(os.environ.get("SLOW_SECONDS", "1.0"))
SUPERVISOR = os.getpid()

PATHS = {  # FAULT_IN -> the method of HardenedChannel that raises
    "reading": "received",
    "asking-ready": "readable",
    "writing": "handle_write",
    "timing-out": "time_out",
    "closing": "close_now",  # the lingering close's end, eviction and the drain all close through it
    "pipelining": "parse_ahead",
}


class InjectedFault(RuntimeError):
    pass


def create_file(path: str) -> None:
    with open(path, "a"):
        pass


def wrap_create_app(wrap: Callable[[Callable[[str], app.WSGIApp], str], app.WSGIApp]) -> None:
    """The create_app the server loads hello-api with becomes wrap(the create_app before it, environment)."""
    create_app = application.create_app
    application.create_app = lambda environment: wrap(create_app, environment)


def slow() -> None:
    def with_slow_path(create_app: Callable[[str], app.WSGIApp], environment: str) -> app.WSGIApp:
        wsgi_app = create_app(environment)

        def wrapped(environ: dict, start_response: app.StartResponse) -> list[bytes]:
            if environ["PATH_INFO"] != "/slow":
                return wsgi_app(environ, start_response)
            if os.environ.get("STARTED_FILE"):
                create_file(os.environ["STARTED_FILE"])
            time.sleep(SLOW_SECONDS)
            body = b'{"slow":"done"}'
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return wrapped

    wrap_create_app(with_slow_path)


def failing_path() -> None:
    dispatch = app.dispatch

    def failing_dispatch(environ: dict, environment: str) -> object:
        if environ.get("PATH_INFO") == FAILING_PATH:
            raise RuntimeError("deliberate failure for the 500 test")
        return dispatch(environ, environment)

    app.dispatch = failing_dispatch


def broken_health() -> None:
    def health(environment: str) -> app.Answer:
        raise RuntimeError("secret internal detail")

    app.health = health


def failing_worker() -> None:
    def in_the_supervisor_only(create_app: Callable[[str], app.WSGIApp], environment: str) -> app.WSGIApp:
        if os.getpid() != SUPERVISOR:
            raise RuntimeError("this worker cannot build its app")
        return create_app(environment)

    wrap_create_app(in_the_supervisor_only)


def slow_start_worker() -> None:
    def once_told(create_app: Callable[[str], app.WSGIApp], environment: str) -> app.WSGIApp:
        if os.getpid() != SUPERVISOR:
            start_dir = os.environ["START_DIR"]
            create_file(os.path.join(start_dir, f"starting-{os.getpid()}"))
            while not os.path.exists(os.path.join(start_dir, "go")):
                time.sleep(0.01)
        return create_app(environment)

    wrap_create_app(once_told)


def fault_injecting() -> None:
    method_name = PATHS[os.environ["FAULT_IN"]]
    method = getattr(HardenedChannel, method_name)

    def raising(self: HardenedChannel, *args: object, **kwargs: object) -> object:
        if getattr(self, "marked", False):
            raise InjectedFault(f"deliberate fault in HardenedChannel.{method_name}")
        return method(self, *args, **kwargs)

    setattr(HardenedChannel, method_name, raising)
    received = HardenedChannel.received  # the raising one when FAULT_IN=reading: marked first, then it raises

    def marking(self: HardenedChannel, data: bytes) -> bool:
        if FAULT_MARKER in data:
            self.marked = True
        return received(self, data)

    HardenedChannel.received = marking


HOOKS = {hook.__name__: hook for hook in (slow, failing_path, broken_health, failing_worker, slow_start_worker,
                                          fault_injecting)}


def install(names: str) -> None:
    for name in filter(None, names.split(",")):
        if name not in HOOKS:
            raise SystemExit(f"{HOOKS_VARIABLE}: no hook {name!r}; there are {', '.join(HOOKS)}")
        HOOKS[name]()


if __name__ == "__main__":
    install(os.environ.get(HOOKS_VARIABLE, ""))
    sys.exit(server.main())
