"""HTTP/1.1 on waitress, hardened. The only module that reaches into waitress's internals.

waitress 3.0.2 parses and frames requests; each override below says which of its behaviours it changes
and why, and tests/test_hardening.py and tests/test_strict_http.py fail if a waitress upgrade changes one
of them underneath. The grammar itself is service/http_parser.py (no waitress in it); this module plugs it in:

- HardenedParser: the header block found by http_parser.HeadScanner (each byte looked at once, a bare LF
  or whitespace before the request line refused at once; waitress re-searches all it has on every read
  and waits for CRLF CRLF), then held to http_parser's request-line, Host, Transfer-Encoding and
  field-name rules (waitress frames several leniently: request smuggling) before waitress parses it; a
  broken absolute-form target is a 400 (waitress lets urlsplit's ValueError escape into its event loop);
  Connection read as a list (waitress keeps a connection open on `close, close`).
- StrictChunkedReceiver: chunked bodies framed by http_parser.ChunkedBody (CRLF only, hex sizes,
  well-formed extensions and trailers), the body limit counting data bytes; waitress's ChunkedReceiver
  takes bare LFs and anything up to CRLF CRLF as trailers, and its limit counts framing.
- JSONErrorTask: waitress's own error answers (400, 413, 431, 501, ...) in the service's JSON form with
  the same headers as the app's, logged like every other answer; text/plain and unlogged in waitress.
- HardenedWSGITask: PATH_INFO is the path as sent (waitress merges leading slashes: `//x` becomes `/x`).
- HardenedChannel: a lingering close after an error answer (read and discard for a moment, so the
  client reads the status instead of a reset); at most PIPELINE_DEPTH requests parsed ahead per
  connection (waitress parses everything one read holds); `100 Continue` only for a request still
  waiting for its body (waitress sends it to one that failed or has no body, then never answers it).
- HardenedServer: a request must arrive whole within `receive_timeout`, else a 408 (waitress only times out
  idle connections, silently, and any byte restarts that clock); at the connection limit a connection
  lingering after its error answer, or else the one waiting longest for a request, is closed to admit a new
  one (waitress stops accepting: a few hundred silent sockets lock every client out); up to ACCEPT_BATCH
  connections are accepted per turn of the event loop (waitress takes one); failures of accept() are
  summarised, not logged with a traceback each.
- Transport: runs the event loop itself (service/event_loop.py: a fault while handling one connection closes
  that connection only; waitress's loop lets it end the process) and sweeps receive timeouts and lingering
  closes between its turns; drains it on a stop signal (waitress's `run()` cancels queued requests when it
  stops), fitting the connection limit to the open-file limit first.
- CountingDispatcher and QueueDepthSummary: waitress warns "Task queue depth is N" on every queued
  request (a log record each, on the event loop's thread); this counts them, keeps the peak and writes
  one line a period.
"""

import contextlib
import logging
import math
import resource
import socket
import time
from collections.abc import Callable

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.buffers import OverflowableBuffer
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask
from waitress.utilities import Error

from .app import JSON_HEADERS, encode
from .config import Settings
from .event_loop import EventLoop, FaultLog
from .healthcheck import HEALTHCHECK_AGENT
from .http_parser import (
    BodyTooLarge,
    ChunkedBody,
    FieldsTooLarge,
    HeadScanner,
    Malformed,
    UnsupportedCoding,
    check_fields,
    check_request_line,
    connection_options,
)
from .logs import AccessLog

log = logging.getLogger("service")

MAX_HEADER_BYTES = 16 * 1024  # request line and headers; more is a 431
MAX_BODY_BYTES = 64 * 1024  # no endpoint takes a body; more is a 413
PIPELINE_DEPTH = 4  # requests parsed ahead per connection; the rest waits, unparsed, for its turn
LINGER_SECONDS = 2.0  # after an error answer, how long unread input is drained before closing
SWEEP_SECONDS = 0.5  # how often receive timeouts are enforced
QUEUE_SUMMARY_SECONDS = 60.0
ACCEPT_PAUSE_SECONDS = 0.5  # after accept() fails (out of descriptors), before trying again
ACCEPT_BATCH = 64  # connections accepted per turn of the event loop
SELECT_CEILING = 1024  # FD_SETSIZE: select() cannot watch descriptors numbered higher
SPARE_DESCRIPTORS = 24  # stdio, listening sockets, waitress's wake-up pipes, a margin
MAX_LOGGED_TARGET = 512  # characters of the request target in an access line (PIPE_BUF is 4096)
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")



# ---- refusals: every error answer's status, code and advice ------------------------------------------

class Refusal(Error):
    """An error answer: HTTP status, the JSON `error` code, and a message that says what to do."""

    def __init__(self, code: int, reason: str, error: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.error, self.message = code, reason, error, message


def bad_request(problem: str) -> Refusal:
    return Refusal(400, "Bad Request", "bad_request",
                   f"{problem}. Send one well-formed HTTP/1.1 request: METHOD /path HTTP/1.1, CRLF line ends, "
                   "a percent-encoded path.")


def transfer_encoding_not_supported() -> Refusal:
    return Refusal(501, "Not Implemented", "transfer_encoding_not_supported",
                   "Transfer-Encoding other than chunked is not supported; send no body (or a chunked one).")


def body_too_large() -> Refusal:
    return Refusal(413, "Content Too Large", "body_too_large",
                   f"The request body is {MAX_BODY_BYTES} bytes or more; no endpoint takes a body: send none.")


def headers_too_large() -> Refusal:
    return Refusal(431, "Request Header Fields Too Large", "headers_too_large",
                   f"The request line and headers (or the chunked trailers) are {MAX_HEADER_BYTES} bytes or more; "
                   "send fewer or smaller headers.")


def request_timeout(seconds: float) -> Refusal:
    return Refusal(408, "Request Timeout", "request_timeout",
                   f"The request did not arrive whole within {seconds:g} s (APP_RECEIVE_TIMEOUT); send it at once, "
                   "on a new connection.")


def refusal_for(error: Error) -> Refusal:
    """waitress's own errors, as the service answers them."""
    if isinstance(error, Refusal):
        return error
    detail = str(error.body).rstrip(".")
    if error.code == 413:
        return body_too_large()
    if error.code == 431:
        return headers_too_large()
    if error.code == 501:
        return transfer_encoding_not_supported()
    if error.code == 400:
        return bad_request(detail)
    return Refusal(500, "Internal Server Error", "internal_error",
                   "The server failed to answer; the error is logged. Retry, and report it if it persists.")


# ---- parsing -----------------------------------------------------------------------------------------

class StrictChunkedReceiver:
    """waitress's body-receiver interface around http_parser.ChunkedBody (waitress's ChunkedReceiver takes
    an LF for a line end, empty lines for chunk sizes and anything up to CRLF CRLF for trailers, and its
    limit counts the framing)."""

    completed = False
    error: Refusal | None = None

    def __init__(self, buf: OverflowableBuffer) -> None:
        self.buf = buf
        self.body = ChunkedBody(MAX_BODY_BYTES, MAX_HEADER_BYTES)

    def __len__(self) -> int:
        return len(self.buf)

    def received(self, data: bytes) -> int:
        try:
            consumed = self.body.feed(data, self.buf.append)
        except (Malformed, BodyTooLarge, FieldsTooLarge) as problem:
            self.error = refusal_for_problem(problem)
            return len(data)
        self.completed = self.body.completed
        return consumed

    def getfile(self):  # a file object of waitress's buffer
        return self.buf.getfile()

    def getbuf(self) -> OverflowableBuffer:
        return self.buf


def refusal_for_problem(problem: ValueError) -> Refusal:
    """http_parser's refusals, as the service answers them."""
    if isinstance(problem, UnsupportedCoding):
        return transfer_encoding_not_supported()
    if isinstance(problem, BodyTooLarge):
        return body_too_large()
    if isinstance(problem, FieldsTooLarge):
        return headers_too_large()
    return bad_request(str(problem))


class HardenedParser(HTTPRequestParser):
    """waitress's parser, fed the header block once it is whole (found by http_parser.HeadScanner, which
    looks at each byte once and refuses a bare LF at once), held to http_parser's rules, with a strict
    chunked receiver."""

    refusal: Refusal | None = None

    def __init__(self, adj: Adjustments) -> None:
        super().__init__(adj)
        self.head = HeadScanner()

    @property
    def sent_line(self) -> bytes:
        """The request line as far as it arrived, for the access log."""
        return self.head.request_line()

    def begun(self) -> bool:
        return self.headers_finished or self.head.begun()

    def received(self, data: bytes) -> int:
        if self.error is not None or self.completed:
            return len(data) if self.error is not None else 0
        if self.body_rcv is not None:
            return self.received_body(data)
        try:
            taken = self.head.feed(data)
        except Malformed as problem:
            return self.refuse(bad_request(str(problem)), len(data))
        if taken < 0:  # more to come, unless it is over the limit already (empty lines before it count)
            if len(self.head.buffer) < self.adj.max_request_header_size:
                return len(data)
            return self.refuse(headers_too_large(), len(data))
        # Whole: waitress parses it, once (and answers 431 if it is over the limit).
        block = bytes(self.head.buffer[self.head.start:len(self.head.buffer) - len(data) + taken])
        self.head.work += len(block)
        super().received(block)
        if self.refusal is not None:  # waitress turns every parse error into its own 400
            self.error = self.refusal
        return len(data) if taken < 0 else taken

    def received_body(self, data: bytes) -> int:
        """waitress's, without its body limit (which counts chunk framing: the receivers apply it)."""
        receiver = self.body_rcv
        consumed = receiver.received(data)
        if receiver.error:
            self.error, self.completed = receiver.error, True
        elif receiver.completed:
            self.completed = True
            if self.chunked:  # the app sees a body of known length, as in waitress
                self.headers["CONTENT_LENGTH"] = str(len(receiver))
        return consumed

    def refuse(self, refusal: Refusal, consumed: int) -> int:
        self.error = self.refusal = refusal
        self.completed = self.headers_finished = True
        return consumed

    def parse_header(self, header_plus: bytes) -> None:
        line, _, fields = header_plus.partition(b"\r\n")
        try:
            version = check_request_line(line)
            if version not in ((1, 0), (1, 1)):
                raise self.refused(Refusal(505, "HTTP Version Not Supported", "http_version_not_supported",
                                           "Only HTTP/1.0 and HTTP/1.1 are served; send HTTP/1.1."))
            check_fields(version, fields)
        except (Malformed, UnsupportedCoding) as problem:
            raise self.refused(refusal_for_problem(problem)) from None
        try:
            super().parse_header(header_plus)
        except ValueError as problem:  # urlsplit's, for targets such as http://[
            raise self.refused(bad_request(f"The request target is not a valid URI ({problem})")) from None
        if self.chunked:
            self.body_rcv = StrictChunkedReceiver(self.body_rcv.getbuf())
        self.read_connection_options()

    def read_connection_options(self) -> None:
        """waitress compares Connection with exactly `close` (HTTP/1.1) or `keep-alive` (HTTP/1.0), here and
        in its task: `close, close`, or a second Connection field, kept the connection open. Read as a list."""
        options = connection_options(self.headers.get("CONNECTION", ""))
        if "close" in options:
            self.headers["CONNECTION"], self.connection_close = "close", True
        elif "keep-alive" in options and self.version == "1.0":
            self.headers["CONNECTION"], self.connection_close = "keep-alive", False

    def refused(self, refusal: Refusal) -> ParsingError:
        self.refusal = refusal
        return ParsingError(refusal.message)


# ---- tasks: answering, and the access log ------------------------------------------------------------

def logged_field(text: str, limit: int) -> str:
    """A field of an access line: printable, never empty, at most `limit` characters (marked when cut)."""
    if not text:
        return "-"
    if len(text) <= limit and text.isascii() and text.isprintable() and " " not in text:
        return text  # the usual case, on every request's path: nothing to escape or cut
    raw = text.encode("latin-1", "replace")
    safe = "".join(chr(b) if 0x21 <= b <= 0x7E else f"%{b:02X}" for b in raw)
    if len(safe) > limit:
        return f"{safe[:limit]}...[{len(raw)}B]"
    return safe


class LoggedTask:
    """Times every answer and hands it to the server's access log (None: no access log)."""

    def service(self) -> None:
        started = time.perf_counter()
        try:
            super().service()
        finally:
            access_log = self.channel.server.access_log
            if access_log is not None and not self.is_own_healthcheck():
                self.log_answer(access_log, time.perf_counter() - started)

    def is_own_healthcheck(self) -> bool:
        """The image's HEALTHCHECK (every few seconds) is left out; a health check from elsewhere is not."""
        return (self.request.headers.get("USER_AGENT") == HEALTHCHECK_AGENT
                and self.channel.addr[0] in LOOPBACK)

    def log_answer(self, access_log: AccessLog, seconds: float) -> None:
        method, target = self.method_and_target()
        access_log(logged_field(str(self.channel.addr[0]), 64), logged_field(method, 32),
                   logged_field(target, MAX_LOGGED_TARGET), self.status[:3], seconds)

    def method_and_target(self) -> tuple[str, str]:
        return sent_method_and_target(self.request)


def sent_method_and_target(request: HardenedParser) -> tuple[str, str]:
    """What the client sent, as far as it went. waitress sets `command` and `request_uri` only for a request
    line it parsed (and fakes `GET /` for a 431): a refused request is read from the line as it arrived."""
    if request.error is None:
        return request.command, request.request_uri
    parts = request.sent_line.split(b" ")
    method = parts[0].decode("latin-1") if parts else ""
    target = parts[1].decode("latin-1") if len(parts) > 1 else ""
    return method, target


class OneSendHeader:
    """waitress sends an answer's header and its body with a send() each: two syscalls, and two packets under
    TCP_NODELAY. The header is held back here and goes out with the first body bytes (or alone, at the end)."""

    def write(self, data: bytes) -> None:
        if self.wrote_header:
            return super().write(data)
        self.channel.hold_next_write = True
        try:
            super().write(data)
        finally:
            self.channel.release_held_write()


class HardenedWSGITask(LoggedTask, OneSendHeader, WSGITask):
    def get_environment(self) -> dict:
        environ = super().get_environment()
        environ["PATH_INFO"] = self.request.path  # as sent: waitress would turn //health into /health
        return environ


class JSONErrorTask(LoggedTask, OneSendHeader, ErrorTask):
    def __init__(self, channel: HTTPChannel, request: HTTPRequestParser) -> None:
        super().__init__(channel, request)
        self.version = "1.1"  # waitress answers a 431 as HTTP/1.0, having given up on the request line

    def execute(self) -> None:
        refusal = refusal_for(self.request.error)
        body = encode({"error": refusal.error, "message": refusal.message})
        self.status = f"{refusal.code} {refusal.reason}"
        self.response_headers.extend(JSON_HEADERS)
        self.set_close_on_finish()
        self.channel.linger_before_close = True
        self.content_length = len(body)
        self.write(body)


# ---- connections -------------------------------------------------------------------------------------

class HardenedChannel(HTTPChannel):
    parser_class = HardenedParser
    task_class = HardenedWSGITask
    error_task_class = JSONErrorTask
    linger_before_close = False
    lingering_until: float | None = None
    hold_next_write = False  # set by OneSendHeader: the next write is the header, to go out with the body
    held_write = b""

    def __init__(self, server: "HardenedServer", sock: socket.socket, addr: tuple, adj: Adjustments,
                 map: dict | None = None) -> None:
        super().__init__(server, sock, addr, adj, map)
        self.receiving_since: float | None = time.monotonic()  # None: idle between requests
        self.waiting_since = self.receiving_since  # since the last answer, or since the connection opened
        self.unparsed = b""

    def waiting_start(self) -> float:
        """Since when this connection has waited: for its request's first byte, or for the whole of it."""
        return self.waiting_since if self.receiving_since is None else self.receiving_since

    def waits_for_a_request(self) -> bool:
        """Nothing of this connection's is being answered, and it is not closing."""
        return not (self.requests or self.total_outbufs_len or self.will_close or self.close_when_flushed
                    or self.lingering_until is not None or self.unparsed)

    def may_be_evicted(self) -> bool:
        """At the connection limit it may be closed to admit another: it lingers after its error answer (which it
        has been sent), or it waits for a request. One with a request being answered never is."""
        return self.lingering_until is not None or self.waits_for_a_request()

    def eviction_order(self) -> tuple[bool, float]:
        """Lowest first: lingering connections, soonest done first; then the one waiting longest for a request.
        Refused clients that stay connected linger for LINGER_SECONDS each: a crowd of them would otherwise
        leave a fresh client, accepted and not yet read, the only connection that may be closed."""
        if self.lingering_until is not None:
            return (False, self.lingering_until)
        return (True, self.waiting_start())

    # Receiving: at most PIPELINE_DEPTH requests parsed ahead; the rest waits in `unparsed`.
    def received(self, data: bytes) -> bool:
        if not data:
            return False
        if self.receiving_since is None:
            self.receiving_since = time.monotonic()
        with self.requests_lock:
            if self.will_close or self.close_when_flushed:
                return False
            while data and len(self.requests) < PIPELINE_DEPTH:
                data = self.parse_one(data)
            self.unparsed = data
            if self.receiving_since is None and self.request is not None and self.request.begun():
                # begun in the same read that completed the one before (which stopped the clock): from now on
                self.receiving_since = time.monotonic()
        return True

    def send_continue(self) -> None:
        """waitress's, but only for a request still waiting for its body: waitress sends `100 Continue` to a
        request that has already failed (413, 400) or has no body, then marks it incomplete, so it is never
        answered. Such a request is answered at once instead."""
        if self.request.completed:
            self.request.expect_continue = False
            return
        super().send_continue()

    def time_out(self, seconds: float) -> None:
        """The request has not arrived whole in time: a 408 if some of it came and nothing else is waiting to
        be written (then the lingering close); a connection that sent nothing is closed without a word."""
        self.receiving_since = None
        request = self.request
        if request is None or not request.begun() or self.total_outbufs_len or not self.connected:
            self.will_close = True
            return
        request.error = request.refusal = request_timeout(seconds)
        request.completed = True
        with self.requests_lock:
            self.request, self.unparsed = None, b""
            self.requests.append(request)
            self.server.add_task(self)

    def parse_one(self, data: bytes) -> bytes:
        """Feed one request's worth of `data` to the parser (waitress's loop body); return the rest."""
        if self.request is None:
            self.request = self.parser_class(self.adj)
        consumed = self.request.received(data)
        request = self.request
        if request.expect_continue and request.headers_finished and not self.requests and not self.sent_continue:
            self.send_continue()
        if request.completed:
            self.sent_continue = False
            self.receiving_since = None
            if not request.empty:
                self.requests.append(request)
                if len(self.requests) == 1:
                    self.server.add_task(self)
            self.request = None
            if request.error is not None:
                return b""  # the connection closes after the error answer: the rest is never parsed
        return data[consumed:]

    # Writing (from a task's thread): a held header goes out with the next write, in one send.
    def write_soon(self, data: bytes) -> int:
        if self.hold_next_write:
            self.hold_next_write, self.held_write = False, data
            return len(data)
        if self.held_write and isinstance(data, bytes):
            data, self.held_write = self.held_write + data, b""
        return self.release_held_write() + super().write_soon(data)

    def release_held_write(self) -> int:
        self.hold_next_write = False
        held, self.held_write = self.held_write, b""
        return super().write_soon(held) if held else 0

    def parse_ahead_ready(self) -> bool:
        return bool(self.unparsed) and not self.requests and not self.will_close and not self.close_when_flushed

    def readable(self) -> bool:
        if self.lingering_until is not None:
            return True
        return not self.unparsed and super().readable()

    def writable(self) -> bool:
        if self.lingering_until is not None:
            return False
        if self.requests and self.total_outbufs_len and self.task_thread_is_sending():
            # It sends its own output and wakes the loop when done or stuck; polling meanwhile only spins
            # and keeps the GIL from that thread (the service served 0.44x plain waitress so).
            return False
        return bool(super().writable() or self.parse_ahead_ready())

    def task_thread_is_sending(self) -> bool:
        """The task thread holds the output lock (waiting on it for a flush releases it)."""
        if not self.outbuf_lock.acquire(False):
            return True
        self.outbuf_lock.release()
        return False

    def handle_write(self) -> None:
        super().handle_write()
        if self.connected and self.parse_ahead_ready():
            self.parse_ahead()

    def parse_ahead(self) -> None:
        """The requests that waited unparsed (pipelined past PIPELINE_DEPTH), now that the others are answered."""
        data, self.unparsed = self.unparsed, b""
        self.received(data)

    def handle_read(self) -> None:
        """waitress's, but EAGAIN is "nothing yet", not a reason to close: a descriptor closed (evicted)
        and reused by a new connection within one turn of the event loop is reported readable."""
        if self.lingering_until is not None:
            return self.discard_while_lingering()
        try:
            data = self.recv(self.adj.recv_bytes)  # wasyncore's recv closes the channel on EOF
        except BlockingIOError:
            return None
        except OSError:
            return self.handle_close()
        if data:
            self.last_activity = time.time()
            self.received(data)
        else:
            self.connected = False
        return None

    def discard_while_lingering(self) -> None:
        with contextlib.suppress(OSError):  # a reset ends the lingering as surely as an EOF does
            if self.socket.recv(65536) and time.monotonic() < self.lingering_until:
                return
        self.close_now()

    def service(self) -> None:
        super().service()
        self.waiting_since = time.monotonic()

    # Closing: after an error answer, linger; otherwise, and when lingering is over, close.
    def handle_close(self) -> None:
        if self.linger_before_close and self.lingering_until is None and self.socket is not None:
            try:
                self.socket.shutdown(socket.SHUT_WR)  # the answer is complete: FIN after it
            except OSError:
                return self.close_now()
            self.lingering_until = time.monotonic() + LINGER_SECONDS
            self.will_close = self.close_when_flushed = False
            return None
        return self.close_now()

    def close_now(self) -> None:
        self.lingering_until = None
        HTTPChannel.handle_close(self)


# ---- the listening server ----------------------------------------------------------------------------

class HardenedServer(TcpWSGIServer):
    """waitress's listening socket; `loop` guards the work it does on connections between turns."""

    channel_class = HardenedChannel
    next_sweep = 0.0
    accept_paused_until = 0.0
    accept_failures = 0
    accept_failure_logged = 0.0
    not_clients = 0  # dispatchers in the map that are no client's: listening sockets, wake-up pipes

    def __init__(self, app: Callable, *, loop: EventLoop, access_log: AccessLog | None, receive_timeout: float,
                 **waitress_options: object) -> None:
        self.loop, self.access_log, self.receive_timeout = loop, access_log, receive_timeout
        super().__init__(app, **waitress_options)

    def pull_trigger(self) -> None:
        """Wake the event loop (a task thread does when its answer is written). Once the drain has closed the
        wake-up pipe there is no loop to wake: a thread finishing its answer just then raised EBADF into the log
        (and waitress would write into the pipe's old descriptor number, which another file may have by then)."""
        if self.trigger._closed:
            return
        with contextlib.suppress(OSError):  # closed between the check and the write
            super().pull_trigger()

    def client_connections(self) -> int:
        """Open client connections (waitress counts len(map) against the limit: 2 or 4 too many)."""
        return len(self._map) - self.not_clients

    def evictable_channels(self) -> list[HardenedChannel]:
        return [c for c in self.active_channels.values() if c.may_be_evicted()]

    def readable(self) -> bool:
        """Only whether to accept: asked while the event loop lists what to watch, so it closes nothing (a
        connection closed then left its descriptor in select()'s list: EBADF, and the process exited)."""
        if not self.accepting or time.monotonic() < self.accept_paused_until:
            return False
        return self.client_connections() < self.adj.connection_limit or bool(self.evictable_channels())

    def maintenance(self, now: float) -> None:
        """Disabled: `sweep` runs waitress's idle timeout itself, between turns of the event loop."""

    def sweep(self, now: float) -> None:
        """Between turns, every SWEEP_SECONDS: close lingerers whose time is up, answer 408 to requests not
        received whole within receive_timeout, and run waitress's idle timeout. A fault closes its connection."""
        if now < self.next_sweep:
            return
        self.next_sweep = now + SWEEP_SECONDS
        for channel in list(self.active_channels.values()):
            if channel.lingering_until is not None and now >= channel.lingering_until:
                with self.loop.guard(channel, "closing it after its lingering close"):
                    channel.close_now()
            elif (channel.receiving_since is not None and not channel.requests
                  and now - channel.receiving_since > self.receive_timeout):
                with self.loop.guard(channel, "timing out its request (APP_RECEIVE_TIMEOUT)"):
                    channel.time_out(self.receive_timeout)
        with self.loop.guard(self, "closing idle connections (APP_CHANNEL_TIMEOUT)"):
            super().maintenance(time.time())

    def handle_accept(self) -> None:
        """Accept what is waiting, up to ACCEPT_BATCH (waitress takes one per turn of the event loop, and
        each turn polls every connection: a backlog of a thousand took most of a second). Over the
        connection limit, each new connection closes one that lingers after its error answer, or else the one
        that has waited longest for a request (HardenedChannel.eviction_order)."""
        evictable: list[HardenedChannel] | None = None  # the first to close last; listed once per batch
        for _ in range(ACCEPT_BATCH):
            try:
                accepted = self.accept()
            except OSError as problem:
                self.accept_failed(problem)
                return
            if accepted is None:
                return
            connection, address = accepted
            try:
                self.set_socket_options(connection)  # TCP_NODELAY: without it, Nagle and delayed ACKs cost 40 ms
            except OSError:  # the client is already gone
                connection.close()
                continue
            channel = self.channel_class(self, connection, self.fix_addr(address), self.adj, map=self._map)
            if self.client_connections() > self.adj.connection_limit:
                if evictable is None:
                    evictable = sorted(self.evictable_channels(), key=HardenedChannel.eviction_order, reverse=True)
                if not self.evict_one(evictable, spare=channel):
                    # Every other connection is being answered: this one is closed (it sent nothing yet that
                    # was read), and no more are accepted until one closes.
                    with self.loop.guard(channel, "closing it (the connection limit, nothing to close instead)"):
                        channel.close_now()
                    return
            # A client sends its request right behind the handshake: read it now, so that a request that came
            # whole is being answered, not a connection the next arrival over the limit may close.
            with self.loop.guard(channel, "reading"):
                channel.handle_read()

    def evict_one(self, evictable: list[HardenedChannel], spare: HardenedChannel) -> bool:
        while evictable:
            first = evictable.pop()
            if first is not spare and first.socket is not None and first.may_be_evicted():
                with self.loop.guard(first, "closing it to admit another (APP_CONNECTION_LIMIT)"):
                    first.close_now()
                return True
        return False

    def accept_failed(self, problem: OSError) -> None:
        """Out of descriptors, most likely: pause accepting a moment and log once a minute, not per try."""
        now = time.monotonic()
        self.accept_paused_until = now + ACCEPT_PAUSE_SECONDS
        self.accept_failures += 1
        if now - self.accept_failure_logged >= 60:
            log.warning("accept() failed %d time(s): %s; new connections wait meanwhile. Raise the open-file "
                        "limit or lower APP_CONNECTION_LIMIT.", self.accept_failures, problem.strerror or problem)
            self.accept_failure_logged, self.accept_failures = now, 0


# ---- waitress's queue warning, summarised ------------------------------------------------------------

class QueueDepthSummary:
    """Counts requests that waited for a worker thread and writes one line a period with the peak.

    The line means every worker thread was busy and requests waited for one: fine in a burst; if it
    appears every period, add threads, workers or replicas. The first queueing is said at once, with the
    time since counting began (start-up), not the period.
    """

    def __init__(self, period: float = QUEUE_SUMMARY_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.period, self.clock, self.peak, self.count = period, clock, 0, 0
        self.counting_since = clock()
        self.last_written = -math.inf

    def queued(self, depth: int) -> None:
        """One request waited; the event loop's next turn writes the line when one is due."""
        self.peak, self.count = max(self.peak, depth), self.count + 1

    def flush(self, force: bool = False) -> None:
        now = self.clock()
        if self.count and (force or now - self.last_written >= self.period):
            log.warning("all worker threads were busy: %d request(s) waited for one, at most %d at once, in the "
                        "last %.1fs. Persistent? Raise APP_THREADS or run more replicas.",
                        self.count, self.peak, now - self.counting_since)
            self.peak, self.count, self.last_written, self.counting_since = 0, 0, now, now


class CountingDispatcher(ThreadedTaskDispatcher):
    """waitress's task queue, but a queued request is counted, not logged: waitress calls
    `logger.warning("Task queue depth is %d")` for each one, and building that record (then filtering it
    away) was a tenth of the event loop's time under load."""

    def __init__(self, summary: QueueDepthSummary) -> None:
        super().__init__()
        self.summary = summary

    def add_task(self, task: object) -> None:
        with self.lock:
            self.queue.append(task)
            self.queue_cv.notify()
            depth = len(self.queue) - (len(self.threads) - self.stop_count - self.active_count)
        if depth > 0:
            self.summary.queued(depth)


def wait_until_threads_idle(dispatcher: ThreadedTaskDispatcher, seconds: float = 5.0) -> None:
    """waitress counts a thread as busy until it first waits for a task: a request that arrives before
    then is logged as queued. Start-up waits (briefly) for every thread to be waiting."""
    deadline = time.monotonic() + seconds
    while dispatcher.active_count > 0 and time.monotonic() < deadline:
        time.sleep(0.001)


# ---- building, serving, draining ---------------------------------------------------------------------

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


def fit_connection_limit(wanted: int) -> int:
    """Raise the soft open-file limit toward what `wanted` connections need; if the hard limit is lower,
    serve fewer connections (said once) rather than fail accept() with EMFILE under load."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + SPARE_DESCRIPTORS
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    available = soft if soft != resource.RLIM_INFINITY else needed
    if available >= needed:
        return wanted
    fitted = max(1, available - SPARE_DESCRIPTORS)
    log.warning("APP_CONNECTION_LIMIT=%d needs %d open files, but this process may open %d: serving at most %d "
                "connections. Raise the limit (docker run --ulimit nofile=%d) or lower APP_CONNECTION_LIMIT.",
                wanted, needed, available, fitted, needed)
    return fitted


def needs_poll(connection_limit: int) -> bool:
    """select() cannot watch descriptors numbered 1024 or more; poll() can."""
    return connection_limit + SPARE_DESCRIPTORS > SELECT_CEILING


def adjustments(settings: Settings, connection_limit: int) -> Adjustments:
    return Adjustments(
        listen=" ".join(listen_addresses(settings.host, settings.port)),
        threads=settings.threads,
        connection_limit=connection_limit,
        channel_timeout=settings.channel_timeout,
        asyncore_use_poll=needs_poll(connection_limit),
        max_request_header_size=MAX_HEADER_BYTES,
        max_request_body_size=MAX_BODY_BYTES,
        ident="",  # no Server header advertising the software
        expose_tracebacks=False,
    )


def bind_listeners(settings: Settings) -> list[socket.socket]:
    """The listening sockets waitress would open for `settings`, bound and listening, for workers to share.

    Bound once, before the workers are forked, they are shared: a taken port fails here, once; the
    kernel queues connections on one backlog that every worker accepts from, so a worker's death loses
    no connection still waiting in it. With `settings.reuse_port` (APP_REUSE_PORT=on) each worker calls
    this itself and gets sockets of its own with SO_REUSEPORT: the kernel spreads new connections over
    them, and lets any other process of the same user bind the port too."""
    adj = adjustments(settings, settings.connection_limit)
    sockets: list[socket.socket] = []
    try:
        for family, socktype, proto, address in adj.listen:
            sock = socket.socket(family, socktype, proto)
            sockets.append(sock)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # as waitress does
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if settings.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            sock.listen(adj.backlog)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


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
        try:
            for sockinfo, sock in self.listen_on(sockets):
                # As waitress's create_server does with sockets bound elsewhere.
                self.listeners.append(HardenedServer(
                    app, loop=self.loop, access_log=access_log, receive_timeout=settings.receive_timeout,
                    map=self.map, dispatcher=self.dispatcher, adj=self.adj, sockinfo=sockinfo, _sock=sock,
                    bind_socket=sock is None))
        except OSError:
            wasyncore.close_all(self.map)
            raise
        for listener in self.listeners:
            listener.not_clients = len(self.map)  # before any connection: the listeners and their triggers
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
                method, target = sent_method_and_target(request)
                fields = {"client": logged_field(str(channel.addr[0]), 64), "method": logged_field(method, 32),
                          "target": logged_field(target, MAX_LOGGED_TARGET)}
                log.warning("request cut short by %s, unanswered: %s %s %s", why, *fields.values(),
                            extra={"fields": fields})
        return cut

    def cancel_threads(self) -> None:
        """waitress's shutdown, without its wait: its "N thread(s) still running" counts idle threads too."""
        self.dispatcher.set_thread_count(0)
        with self.dispatcher.lock:
            while self.dispatcher.queue:
                self.dispatcher.queue.popleft().cancel()
