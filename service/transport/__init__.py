"""HTTP/1.1 on waitress, hardened: the only package that reaches into waitress's internals.

waitress 3.0.2 parses and frames requests; each module here is the twin of the waitress module (or class) it
overrides, to be read side by side with it on an upgrade, and says which behaviours it changes and why.
tests/test_hardening.py and tests/test_strict_http.py fail if a waitress upgrade changes one of them
underneath. The grammar itself is service/http_parser.py (no waitress in it); this package plugs it in:

- parser.py (waitress/parser.py), HardenedParser: the header block found by http_parser.HeadScanner (each byte
  looked at once, a bare LF or whitespace before the request line refused at once; waitress re-searches all it
  has on every read and waits for CRLF CRLF), then held to http_parser's request-line, Host,
  Transfer-Encoding and field-name rules (waitress frames several leniently: request smuggling) before
  waitress parses it; a broken absolute-form target is a 400 (waitress lets urlsplit's ValueError escape
  into its event loop); Connection read as a list (waitress keeps a connection open on `close, close`).
- receiver.py (waitress/receiver.py), StrictChunkedReceiver: chunked bodies framed by http_parser.ChunkedBody
  (CRLF only, hex sizes, well-formed extensions and trailers), the body limit counting data bytes;
  waitress's ChunkedReceiver takes bare LFs and anything up to CRLF CRLF as trailers, and its limit counts
  framing.
- refusals.py (waitress/utilities.py's errors): every error answer's status, code and advice.
- task.py (waitress/task.py), JSONErrorTask: waitress's own error answers (400, 413, 431, 501, ...) in the
  service's JSON form with the same headers as the app's (service/answers.py), logged like every other
  answer; text/plain and unlogged in waitress. HardenedWSGITask: PATH_INFO is the path as sent (waitress
  merges leading slashes: `//x` becomes `/x`). Both send an answer's header with its body, in one send.
- channel.py (waitress/channel.py), HardenedChannel: a lingering close after an error answer (read and discard
  for a moment, so the client reads the status instead of a reset); at most PIPELINE_DEPTH requests parsed
  ahead per connection (waitress parses everything one read holds); `100 Continue` only for a request still
  waiting for its body (waitress sends it to one that failed or has no body, then never answers it).
- server.py (waitress/server.py), HardenedServer: a request must arrive whole within `receive_timeout`, else a
  408 (waitress only times out idle connections, silently, and any byte restarts that clock); at the
  connection limit a connection lingering after its error answer, or else the one waiting longest for a
  request, is closed to admit a new one (waitress stops accepting: a few hundred silent sockets lock every
  client out); up to ACCEPT_BATCH connections are accepted per turn of the event loop (waitress takes one);
  failures of accept() are summarised, not logged with a traceback each.
- event_loop.py (waitress/wasyncore.py's loop, poll and poll2): a fault while handling one connection closes
  that connection only; waitress's loop lets it end the process.
- dispatcher.py (waitress/task.py's ThreadedTaskDispatcher), CountingDispatcher and QueueDepthSummary:
  waitress warns "Task queue depth is N" on every queued request (a log record each, on the event loop's
  thread); this counts them, keeps the peak and writes one line a period.
- adjustments.py (waitress/adjustments.py): the settings as waitress's Adjustments, the size limits, and the
  connection limit fitted to the open-file limit.
- here (waitress/__init__.py's serve), Transport: runs the event loop itself and sweeps receive timeouts and
  lingering closes between its turns; drains it on a stop signal (waitress's `run()` cancels queued requests
  when it stops), fitting the connection limit to the open-file limit first.
"""

import logging
import socket
import time
from collections.abc import Callable

from waitress import wasyncore

from ..config import Settings
from ..logs import AccessLog
from .adjustments import adjustments, fit_connection_limit
from .channel import HardenedChannel
from .dispatcher import CountingDispatcher, QueueDepthSummary, wait_until_threads_idle
from .event_loop import EventLoop, FaultLog
from .server import NOT_CLIENTS_PER_LISTENER, HardenedServer
from .task import logged_request, sent_method_and_target

log = logging.getLogger("service")


class Transport:
    """Every listening socket of one process, their connections, and the worker threads. `sockets`:
    listening sockets bound already (by bind_listeners: shared by workers, or a worker's own); None: bind them here."""

    def __init__(self, app: Callable, settings: Settings, access_log: AccessLog | None,
                 sockets: list[socket.socket] | None = None) -> None:
        self.adj = adjustments(settings, fit_connection_limit(settings.connection_limit))
        self.map: dict = {}
        self.faults = FaultLog()
        self.loop = EventLoop(self.map, self.adj.asyncore_use_poll, self.faults)
        self.queue_summary = QueueDepthSummary()
        self.dispatcher = CountingDispatcher(self.queue_summary)
        self.listeners: list[HardenedServer] = []
        listen_on = self.listen_on(sockets)
        try:
            for sockinfo, sock in listen_on:
                # As waitress's create_server does with sockets bound elsewhere.
                self.listeners.append(HardenedServer(
                    app, loop=self.loop, access_log=access_log, receive_timeout=settings.receive_timeout,
                    not_clients=NOT_CLIENTS_PER_LISTENER * len(listen_on), map=self.map,
                    dispatcher=self.dispatcher, adj=self.adj, sockinfo=sockinfo, _sock=sock,
                    bind_socket=sock is None))
        except OSError:
            wasyncore.close_all(self.map)
            raise
        self.dispatcher.set_thread_count(self.adj.threads)
        wait_until_threads_idle(self.dispatcher)

    def listen_on(self, sockets: list[socket.socket] | None) -> list[tuple[tuple, socket.socket | None]]:
        if sockets is None:
            return [(sockinfo, None) for sockinfo in self.adj.listen]
        return [((s.family, s.type, s.proto, s.getsockname()), s) for s in sockets]

    @property
    def urls(self) -> str:
        return " ".join(f"http://[{s.effective_host}]:{s.effective_port}" if ":" in s.effective_host
                        else f"http://{s.effective_host}:{s.effective_port}" for s in self.listeners)

    def wake(self) -> None:
        """Interrupt the event loop's wait (safe from a signal handler, and once drained: a second signal
        that arrives after the trigger was closed has nothing left to wake)."""
        self.listeners[0].pull_trigger()

    def serve(self, stopped: Callable[[], bool]) -> None:
        while not stopped():
            self.loop.turn(timeout=1.0)
            now = time.monotonic()
            for listener in self.listeners:
                listener.sweep(now)
            self.queue_summary.flush()
            self.faults.flush()

    def channels(self) -> list[HardenedChannel]:
        return [d for d in self.map.values() if isinstance(d, HardenedChannel)]

    def drain(self, grace: float, cut_short: Callable[[], bool]) -> int:
        """Stop accepting, finish what was received, close the rest. Returns the requests cut short: received
        but not answered when the grace period ran out or `cut_short` said so (each logged)."""
        for listener in self.listeners:
            # The base-class close drops the listening socket but keeps the trigger that task threads
            # still pull to get their output flushed.
            wasyncore.dispatcher.close(listener)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and not cut_short():
            for channel in self.channels():
                if not (channel.requests or channel.total_outbufs_len or channel.parse_ahead_ready()):
                    with self.loop.guard(channel, "closing it idle (the drain)"):
                        channel.close_now()
            if not self.channels():
                break
            self.loop.turn(timeout=0.02)
        cut = self.log_cut_requests("a second stop signal" if cut_short() else f"the {grace:g}s grace period")
        wasyncore.close_all(self.map)
        if cut:  # threads still inside the app are daemons: do not wait for them
            self.cancel_threads()
        else:
            self.dispatcher.shutdown(cancel_pending=True, timeout=1)
        self.queue_summary.flush(force=True)
        self.faults.flush(force=True)
        return cut

    def log_cut_requests(self, why: str) -> int:
        """One warning per request received and not answered (being answered, or queued behind one). A refusal
        still queued (a 400, a 408) is no request cut short: nothing the app would have answered was lost."""
        cut = 0
        for channel in self.channels():
            for request in list(channel.requests):
                if request.error is not None:
                    continue
                cut += 1
                client, method, target = logged_request(str(channel.addr[0]), *sent_method_and_target(request))
                fields = {"client": client, "method": method, "target": target}
                log.warning("request cut short by %s, unanswered: %s %s %s", why, *fields.values(),
                            extra={"fields": fields})
        return cut

    def cancel_threads(self) -> None:
        """waitress's shutdown, without its wait: its "N thread(s) still running" counts idle threads too."""
        self.dispatcher.set_thread_count(0)
        with self.dispatcher.lock:
            while self.dispatcher.queue:
                self.dispatcher.queue.popleft().cancel()
