"""Run the app under waitress: container-minded settings, an access log, and a graceful stop.

waitress installs no signal handlers, and its own shutdown path (`run()` catching SystemExit) cancels
queued requests. So this module runs waitress's event loop itself: SIGTERM or SIGINT closes the
listening sockets, lets every request already received finish and flush within a grace period, closes
idle keep-alive connections, then exits 0. A second signal skips the rest of the grace period.
"""

import contextlib
import logging
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable
from urllib.parse import quote

from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server

from . import __version__, config
from .app import StartResponse, WSGIApp, create_app

log = logging.getLogger("service")

DRAIN_POLL_SECONDS = 0.02
SELECT_CEILING = 1024  # FD_SETSIZE
SPARE_DESCRIPTORS = 24  # stdio, listening sockets, waitress's wake-up pipes, and a margin
STDOUT = 1


def configure_logging(level: str) -> None:
    """Start-up, warnings and tracebacks go to stderr; the access log (below) writes to stdout itself."""
    logging.basicConfig(stream=sys.stderr, level=level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def wire_path(environ: dict) -> str:
    """The path as sent, percent-encoded: unambiguous, and no crafted byte can forge a log line."""
    return quote(environ.get("PATH_INFO", "").encode("latin-1"), safe="/")


def with_access_log(app: WSGIApp, descriptor: int = STDOUT) -> WSGIApp:
    """One line per request on stdout: time, client, method, path as sent, status, duration.

    Written with one os.write per line, not through `logging`: no lock shared by the worker threads and
    no record objects on the hot path (about twice the requests/s under load here). A line under
    PIPE_BUF bytes is written whole, so lines from different threads never interleave.
    """

    def logged(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        status = "-"

        def remember_status(status_line: str, headers: list, exc_info: object = None) -> object:
            nonlocal status
            status = status_line[:3]
            return start_response(status_line, headers, exc_info)

        try:
            return app(environ, remember_status)
        finally:
            line = (f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {environ.get('REMOTE_ADDR', '-')} "
                    f"{environ['REQUEST_METHOD']} {wire_path(environ)} {status} "
                    f"{(time.perf_counter() - started) * 1000:.2f}ms\n")
            with contextlib.suppress(OSError):  # a closed stdout must not turn answers into errors
                os.write(descriptor, line.encode("utf-8", "replace"))

    return logged


def listen_addresses(host: str, port: int) -> list[str]:
    """waitress `listen` entries; '*' means IPv4 everywhere, plus IPv6 where this host has it."""
    if host != "*":
        return [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    addresses = [f"0.0.0.0:{port}"]
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        addresses.append(f"[::]:{port}")
    except OSError:
        pass
    return addresses


def allow_open_files(wanted: int) -> None:
    """Raise the soft open-file limit toward `wanted` so connection_limit, not EMFILE, is what bites."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def needs_poll(connection_limit: int) -> bool:
    """select() cannot watch descriptors numbered 1024 or more; poll() can, but waitress's poll loop
    measured about 4x slower under load here (README, Tuning), so it is used only when needed."""
    return connection_limit + SPARE_DESCRIPTORS > SELECT_CEILING


def build_server(app: WSGIApp, settings: config.Settings, socket_map: dict) -> object:
    allow_open_files(settings.connection_limit + 64)
    return create_server(
        app,
        map=socket_map,
        listen=" ".join(listen_addresses(settings.host, settings.port)),
        threads=settings.threads,
        connection_limit=settings.connection_limit,
        channel_timeout=settings.channel_timeout,
        cleanup_interval=min(30, settings.channel_timeout),
        asyncore_use_poll=needs_poll(settings.connection_limit),
        max_request_header_size=16 * 1024,  # larger headers get 431
        max_request_body_size=64 * 1024,  # no endpoint takes a body
        ident="",  # no Server header advertising the software
        expose_tracebacks=False,
    )


class StopRequest:
    """Counts SIGTERM/SIGINT and wakes the event loop, which may be asleep in select() for up to 1 s."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self.count = 0
        self._wake = wake

    def __call__(self, signum: int, frame: object) -> None:
        self.count += 1
        self._wake()

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self)


def listeners(socket_map: dict) -> list[BaseWSGIServer]:
    return [d for d in socket_map.values() if isinstance(d, BaseWSGIServer)]


def channels(socket_map: dict) -> list[HTTPChannel]:
    return [d for d in socket_map.values() if isinstance(d, HTTPChannel)]


def in_flight(channel: HTTPChannel) -> bool:
    """A request fully received but not yet answered, or an answer not yet sent."""
    return bool(channel.requests or channel.total_outbufs_len)


def drain(socket_map: dict, stop: StopRequest, grace: float, use_poll: bool) -> int:
    """Stop accepting, finish what was received, close the rest. Returns connections cut short."""
    for listener in listeners(socket_map):
        # The base-class close drops the listening socket but keeps the trigger that task threads
        # still pull to get their output flushed.
        wasyncore.dispatcher.close(listener)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and stop.count < 2:
        for channel in channels(socket_map):
            if not in_flight(channel):
                channel.handle_close()
        if not channels(socket_map):
            return 0
        wasyncore.loop(timeout=DRAIN_POLL_SECONDS, map=socket_map, use_poll=use_poll, count=1)
    cut = len(channels(socket_map))
    wasyncore.close_all(socket_map)
    return cut


def urls(socket_map: dict) -> str:
    return " ".join(f"http://[{d.effective_host}]:{d.effective_port}" if ":" in d.effective_host
                    else f"http://{d.effective_host}:{d.effective_port}" for d in listeners(socket_map))


def serve_until_stopped(server: object, socket_map: dict, settings: config.Settings) -> None:
    use_poll = server.adj.asyncore_use_poll
    stop = StopRequest(wake=listeners(socket_map)[0].pull_trigger)
    stop.install()
    log.info("hello-api %s serving environment=%s on %s (threads=%d, connection_limit=%d)",
             __version__, settings.environment, urls(socket_map),
             settings.threads, settings.connection_limit)
    while not stop.count:
        wasyncore.loop(timeout=1.0, map=socket_map, use_poll=use_poll, count=1)
    log.info("Stop signal received: draining for up to %.1fs", settings.shutdown_grace)
    cut = drain(socket_map, stop, settings.shutdown_grace, use_poll)
    server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
    log.info("Stopped%s", f"; {cut} connection(s) cut at the grace limit" if cut else " cleanly")


def main() -> int:
    try:
        settings = config.load(os.environ)
    except config.ConfigError as problem:
        print(f"hello-api: configuration error: {problem}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    socket_map: dict = {}
    try:
        app = create_app(settings.environment)
        if logging.getLogger().isEnabledFor(logging.INFO):
            app = with_access_log(app)
        server = build_server(app, settings, socket_map)
    except OSError as problem:
        print(f"hello-api: cannot listen on {settings.host} port {settings.port}: "
              f"{problem.strerror or problem}. Free the port or choose another APP_PORT or APP_HOST.",
              file=sys.stderr)
        return 1
    serve_until_stopped(server, socket_map, settings)
    return 0
