"""The twin of waitress/server.py's TcpWSGIServer (a listening socket: accepting, the connection limit, the
idle timeout) and of its create_server's binding (bind_listeners)."""

import contextlib
import logging
import socket
import time
from collections.abc import Callable

from waitress.server import TcpWSGIServer

from ..config import Settings
from ..logs import AccessLog
from .adjustments import adjustments
from .channel import HardenedChannel
from .event_loop import EventLoop

log = logging.getLogger("service")

SWEEP_SECONDS = 0.5  # how often receive timeouts are enforced
ACCEPT_PAUSE_SECONDS = 0.5  # after accept() fails (out of descriptors), before trying again
ACCEPT_BATCH = 64  # connections accepted per turn of the event loop
NOT_CLIENTS_PER_LISTENER = 2  # what each listener puts in the map: itself and its wake-up pipe (waitress's trigger)


class HardenedServer(TcpWSGIServer):
    """waitress's listening socket; `loop` guards the work it does on connections between turns."""

    channel_class = HardenedChannel
    next_sweep = 0.0
    accept_paused_until = 0.0
    accept_failures = 0
    accept_failure_logged = 0.0

    def __init__(self, app: Callable, *, loop: EventLoop, access_log: AccessLog | None, receive_timeout: float,
                 not_clients: int, **waitress_options: object) -> None:
        """`not_clients`: the dispatchers in the shared map that are no client's once every listener is built
        (NOT_CLIENTS_PER_LISTENER each), not counted against the connection limit."""
        self.loop, self.access_log, self.receive_timeout = loop, access_log, receive_timeout
        self.not_clients = not_clients
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
