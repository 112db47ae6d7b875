"""The process: configuration, logging, signals and exit codes around the HTTP transport.

waitress installs no signal handlers, and its own shutdown path (`run()` catching SystemExit) cancels
queued requests. So the transport runs waitress's event loop itself, and this module stops it: SIGTERM or
SIGINT closes the listening sockets, lets every request already received finish and flush within a grace
period, closes idle keep-alive connections, then exits 0. A second signal skips the rest of the grace
period.
"""

import logging
import os
import signal
import sys
from collections.abc import Callable

from . import __version__, config, logs, workers
from .application import ApplicationError
from .application import load as load_application
from .transport import Transport
from .transport.adjustments import fit_connection_limit
from .transport.server import bind_listeners

log = logging.getLogger("service")
# Start-up and stop lines: written whatever APP_LOG_LEVEL says (it chooses the access log and warnings).
lifecycle = logging.getLogger("service.lifecycle")

EXIT_OK, EXIT_CANNOT_LISTEN, EXIT_BAD_CONFIGURATION = 0, 1, 2
EXIT_REQUESTS_CUT_SHORT = workers.EXIT_REQUESTS_CUT_SHORT  # stopped; received requests went unanswered


def configure_logging(settings: config.Settings) -> None:
    """Start-up, warnings and tracebacks go to stderr; the access log writes to stdout itself."""
    logs.configure(settings.log_level, settings.log_format)
    lifecycle.setLevel(logging.INFO)


class StopRequest:
    """Counts SIGTERM/SIGINT and wakes the event loop, which may be asleep for up to 1 s."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self.count = 0
        self._wake = wake

    def __call__(self, signum: int, frame: object) -> None:
        self.count += 1
        self._wake()

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self)


def serve_until_stopped(transport: Transport, settings: config.Settings, worker: str = "",
                        serving: Callable[[], None] | None = None,
                        orphaned: Callable[[], bool] = lambda: False) -> int:
    """`worker` names one of several workers in the log; `serving` tells the supervisor it serves;
    `orphaned` is true once the supervisor is gone. Returns the exit status."""
    stop = StopRequest(wake=transport.wake)
    stop.install()
    # A worker is forked with the stop signals blocked (see service.workers): now they are handled.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, workers.STOP_SIGNALS)
    lifecycle.info("hello-api %s serving %s on %s (threads=%d, connection_limit=%d)%s", __version__,
                   f"APP_WSGI={settings.wsgi}" if settings.wsgi else f"environment={settings.environment}",
                   transport.urls, settings.threads,
                   transport.adj.connection_limit, f", {worker}, pid {os.getpid()}" if worker else "")
    if serving:
        serving()
    # A worker whose supervisor was killed (SIGKILL: nothing forwarded) drains as if told to stop,
    # rather than serve on as an orphan; the event loop wakes at least once a second to notice.
    transport.serve(stopped=lambda: stop.count > 0 or orphaned())
    lifecycle.info("%s: draining for up to %.1fs", "Stop signal received" if stop.count else
                   "The supervisor is gone (killed?)", settings.shutdown_grace)
    cut = transport.drain(settings.shutdown_grace, cut_short=lambda: stop.count > 1)
    if cut:
        lifecycle.warning("Stopped; %d request(s) cut short, unanswered (exit status %d)", cut, EXIT_REQUESTS_CUT_SHORT)
        return EXIT_REQUESTS_CUT_SHORT
    lifecycle.info("Stopped cleanly")
    return EXIT_OK


def answer_arguments(arguments: list[str]) -> int | None:
    """--help and --version, alone, answer and exit; anything else is refused, naming the first argument
    that was not expected. None: no arguments, serve."""
    if not arguments:
        return None
    answers = {"--version": lambda: print(f"hello-api {__version__}"),
               "--help": lambda: print(config.usage(), end=""), "-h": lambda: print(config.usage(), end="")}
    if len(arguments) == 1 and arguments[0] in answers:
        answers[arguments[0]]()
        return EXIT_OK
    unexpected = arguments[1] if arguments[0] in answers else arguments[0]
    print(f"hello-api: unexpected argument {unexpected!r}: the service is configured by APP_* environment "
          "variables only. See --help.", file=sys.stderr)
    return EXIT_BAD_CONFIGURATION


def main(arguments: list[str] | None = None) -> int:
    answered = answer_arguments(sys.argv[1:] if arguments is None else arguments)
    if answered is not None:
        return answered
    try:
        settings = config.load(os.environ)
    except config.ConfigError as problem:
        logs.plain_error(f"configuration error: {problem}", config.requested_log_format(os.environ))
        return EXIT_BAD_CONFIGURATION
    configure_logging(settings)
    for warning in config.unknown_variables(os.environ):
        log.warning(warning)
    access_log = logs.access_log(settings.log_format) if logging.getLogger().isEnabledFor(logging.INFO) else None
    count = workers.worker_count(settings.workers)
    if settings.reuse_port and count == 1:
        log.warning("APP_REUSE_PORT is set but has no effect with one worker (APP_WORKERS=%s): the port is bound as "
                    "usual, without SO_REUSEPORT, so a second copy of the service cannot share it", settings.workers)
    try:  # here, before any worker is forked: a name that cannot be served stops start-up once, with exit 2
        app = load_application(settings)
    except ApplicationError as problem:
        logs.plain_error(str(problem), settings.log_format)
        return EXIT_BAD_CONFIGURATION
    if count > 1:
        return serve_with_workers(settings, count, access_log)
    try:
        transport = Transport(app, settings, access_log)
    except OSError as problem:
        return cannot_listen(settings, problem)
    return serve_until_stopped(transport, settings)


def cannot_listen(settings: config.Settings, problem: OSError) -> int:
    logs.plain_error(f"cannot listen on {settings.host} port {settings.port}: {problem.strerror or problem}. "
                     "Free the port or choose another APP_PORT or APP_HOST.", settings.log_format)
    return EXIT_CANNOT_LISTEN


def serve_with_workers(settings: config.Settings, count: int, access_log: logs.AccessLog | None) -> int:
    """APP_WORKERS > 1: bind the port here, once, then supervise `count` forked workers serving it. Each worker
    loads the app again (its modules are already imported, shared with the supervisor; a factory is called
    once more), so every worker has an app of its own.
    APP_REUSE_PORT=true: nothing is bound here; each worker binds its own SO_REUSEPORT socket instead."""
    logs.identify(os.getpid())
    try:
        shared = [] if settings.reuse_port else bind_listeners(settings)
    except OSError as problem:
        return cannot_listen(settings, problem)
    # Fitted here, once: the workers inherit the raised open-file limit and the fitted number, so a low
    # hard limit is said in one warning, not one per worker, and every line gives the real figure.
    settings = settings._replace(connection_limit=fit_connection_limit(settings.connection_limit))

    def worker_main(number: int, serving: Callable[[], None], orphaned: Callable[[], bool]) -> int:
        logs.identify(os.getpid(), worker=number)
        try:
            sockets = bind_listeners(settings) if settings.reuse_port else shared
            transport = Transport(load_application(settings), settings, access_log, sockets)
        except OSError as problem:
            return cannot_listen(settings, problem)
        return serve_until_stopped(transport, settings, worker=f"worker {number} of {count}", serving=serving,
                                   orphaned=orphaned)

    def release() -> None:
        for sock in shared:
            sock.close()

    lifecycle.info("hello-api %s: %d workers (APP_WORKERS=%s), each with %d threads and its own connection limit "
                   "of %d", __version__, count, settings.workers, settings.threads, settings.connection_limit)
    return workers.Supervisor(count, worker_main, settings.shutdown_grace, release).run()
