"""The twin of waitress/channel.py's HTTPChannel: one client connection."""

import contextlib
import socket
import time
from typing import TYPE_CHECKING

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel

from .parser import HardenedParser
from .refusals import request_timeout
from .task import HardenedWSGITask, JSONErrorTask

if TYPE_CHECKING:
    from .server import HardenedServer

PIPELINE_DEPTH = 4  # requests parsed ahead per connection; the rest waits, unparsed, for its turn
LINGER_SECONDS = 2.0  # after an error answer, how long unread input is drained before closing


class HardenedChannel(HTTPChannel):
    parser_class = HardenedParser
    task_class = HardenedWSGITask
    error_task_class = JSONErrorTask
    linger_before_close = False  # set by linger_when_closing(): its answer is an error, so its close lingers
    lingering_until: float | None = None
    hold_next_write = False  # set by hold_header_for_body(): the next write is a header, to go out with the body
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
        request.give_up(request_timeout(seconds))
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
    def hold_header_for_body(self) -> None:
        """The next write is an answer's header (task.OneSendHeader): hold it until the body's first bytes."""
        self.hold_next_write = True

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
    def linger_when_closing(self) -> None:
        """This connection's answer is an error (task.JSONErrorTask): when it closes, it lingers first."""
        self.linger_before_close = True

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
