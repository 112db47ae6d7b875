"""The event loop's turn: which sockets to watch, the wait, and the events; one connection's fault closes that
connection only.

waitress's wasyncore.poll and poll2 ask every dispatcher readable() and writable() while they build what they
hand to select() or poll(), and let any exception raised there, or any error of select() itself, end the loop,
and so the process. A connection closed during that scan (the receive-timeout sweep did it from the listening
socket's readable()) left its descriptor in select()'s list: EBADF, and the service exited on one client that
had been refused and stayed connected. Here:

- the scan asks each dispatcher in turn; one whose socket is closed is taken out of the map (a fault, logged),
  one whose readable() or writable() raises is closed;
- an exception while one dispatcher reads, writes or closes closes that dispatcher (a peer's reset is no fault:
  waitress's own close follows); a listening socket or a wake-up pipe is kept, since closing it would stop the
  service;
- if select() or poll() fails all the same, the descriptors it cannot watch are found and their connections
  closed;
- work between turns that may close connections (the receive-timeout sweep, the drain) runs under `guard`.

Every fault is logged with its traceback the first time in a period, then counted and written as one line a
period (FaultLog), so a flood of the same fault cannot flood the log.
"""

import contextlib
import errno
import logging
import math
import select
import time
from collections.abc import Callable, Iterator

from waitress import wasyncore
from waitress.channel import HTTPChannel

log = logging.getLogger("service")

FAULT_SUMMARY_SECONDS = 60.0
READ, WRITE, HANGUP = 1, 2, 4
# A peer that reset or went away: waitress closes such a connection quietly, and so does this loop.
DISCONNECTED = frozenset({errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN, errno.ECONNABORTED, errno.EPIPE,
                          errno.EBADF})
POLL_READ = select.POLLIN | select.POLLPRI
POLL_HANGUP = select.POLLHUP | select.POLLERR | select.POLLNVAL


class FaultLog:
    """Faults that closed a connection: each kind (exception type and what was being done) is written at once
    with its traceback, then counted, and the count written as one line a period."""

    def __init__(self, period: float = FAULT_SUMMARY_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.period, self.clock = period, clock
        self.written: dict[str, float] = {}  # kind -> when it was last written
        self.unwritten: dict[str, int] = {}  # kind -> faults since then
        self.total = 0

    def record(self, doing: str, client: str, error: BaseException | None) -> None:
        kind = f"{type(error).__name__} while {doing}" if error is not None else doing
        now = self.clock()
        self.total += 1
        if now - self.written.get(kind, -math.inf) < self.period:
            self.unwritten[kind] = self.unwritten.get(kind, 0) + 1
            return
        self.written[kind] = now
        detail = f": {error}" if error is not None and str(error) else ""
        log.error("connection fault, %s%s (client %s): that connection is closed, the others are served",
                  kind, detail, client, exc_info=error)

    def flush(self, force: bool = False) -> None:
        now = self.clock()
        for kind, count in list(self.unwritten.items()):
            if force or now - self.written[kind] >= self.period:
                log.error("connection fault, %s: %d more time(s) in the last %.0fs, each closing its connection "
                          "(the first one's traceback was logged)", kind, count, now - self.written[kind])
                self.written[kind] = now
                del self.unwritten[kind]


def is_client(dispatcher: wasyncore.dispatcher) -> bool:
    """A client's connection (not a listening socket, not a wake-up pipe)."""
    return isinstance(dispatcher, HTTPChannel)


def client_of(dispatcher: wasyncore.dispatcher) -> str:
    address = getattr(dispatcher, "addr", None)
    return str(address[0]) if is_client(dispatcher) and address else "-"


def is_open(dispatcher: wasyncore.dispatcher, fd: int) -> bool:
    """The dispatcher's socket is open, and is the descriptor it is filed under."""
    sock = dispatcher.socket
    return sock is not None and sock.fileno() == fd


class EventLoop:
    """The turns of one process's event loop over `map` (waitress's socket map: descriptor -> dispatcher)."""

    def __init__(self, map: dict, use_poll: bool, faults: FaultLog) -> None:
        self.map, self.use_poll, self.faults = map, use_poll, faults

    def turn(self, timeout: float) -> None:
        """Watch what wants watching for up to `timeout` seconds, then handle what is ready."""
        interest = self.scan()
        if not interest:
            time.sleep(timeout)
            return
        self.dispatch(self.wait(interest, timeout))

    def scan(self) -> dict[int, int]:
        interest: dict[int, int] = {}
        for fd, dispatcher in list(self.map.items()):
            if not is_open(dispatcher, fd):
                self.forget(fd, dispatcher)
                continue
            try:
                wanted = READ if dispatcher.readable() else 0
                if not dispatcher.accepting and dispatcher.writable():
                    wanted |= WRITE
            except Exception as error:
                self.fail(fd, dispatcher, "asking whether it is ready", error)
                continue
            if wanted:
                interest[fd] = wanted
        return interest

    def wait(self, interest: dict[int, int], timeout: float) -> list[tuple[int, int]]:
        try:
            return self.poll(interest, timeout) if self.use_poll else self.select(interest, timeout)
        except (OSError, ValueError) as error:
            self.close_unwatchable(interest, error)
            return []

    @staticmethod
    def select(interest: dict[int, int], timeout: float) -> list[tuple[int, int]]:
        readers = [fd for fd, wanted in interest.items() if wanted & READ]
        writers = [fd for fd, wanted in interest.items() if wanted & WRITE]
        readable, writable, _ = select.select(readers, writers, [], timeout)
        ready = dict.fromkeys(readable, READ)
        for fd in writable:
            ready[fd] = ready.get(fd, 0) | WRITE
        return list(ready.items())

    @staticmethod
    def poll(interest: dict[int, int], timeout: float) -> list[tuple[int, int]]:
        poller = select.poll()
        for fd, wanted in interest.items():
            poller.register(fd, (POLL_READ if wanted & READ else 0) | (select.POLLOUT if wanted & WRITE else 0))
        return [(fd, (READ if events & POLL_READ else 0) | (WRITE if events & select.POLLOUT else 0)
                 | (HANGUP if events & POLL_HANGUP else 0))
                for fd, events in poller.poll(int(timeout * 1000))]

    def close_unwatchable(self, interest: dict[int, int], error: Exception) -> None:
        """select() or poll() refused the set: find the descriptors it refuses alone and close their dispatchers.
        None alone: the fault is not one connection's, and ends the loop."""
        culprits = []
        for fd in interest:
            try:
                select.select([fd], [], [], 0) if not self.use_poll else self.poll({fd: READ}, 0)
            except (OSError, ValueError):
                culprits.append(fd)
        if not culprits:
            raise error
        for fd in culprits:
            dispatcher = self.map.get(fd)
            if dispatcher is not None:
                self.fail(fd, dispatcher, "waiting for it (the descriptor cannot be watched)", error)

    def dispatch(self, ready: list[tuple[int, int]]) -> None:
        """Connections first, then the listening sockets: what connected clients sent is read before new
        clients are admitted, so a client accepted last turn has its request read before an arrival over the
        connection limit could close it as one still waiting for a request."""
        admitting = []
        for fd, events in ready:
            dispatcher = self.map.get(fd)
            if dispatcher is not None and dispatcher.accepting:
                admitting.append((fd, events))
            elif dispatcher is not None:
                self.handle(fd, dispatcher, events)
        for fd, events in admitting:
            dispatcher = self.map.get(fd)
            if dispatcher is not None:
                self.handle(fd, dispatcher, events)

    def handle(self, fd: int, dispatcher: wasyncore.dispatcher, events: int) -> None:
        doing = "reading"
        try:
            if events & READ:
                dispatcher.handle_read_event()
            if events & WRITE and self.map.get(fd) is dispatcher:
                doing = "writing"
                dispatcher.handle_write_event()
            if events & HANGUP and self.map.get(fd) is dispatcher:
                doing = "closing it (the peer hung up)"
                dispatcher.handle_close()
        except OSError as error:
            if error.errno not in DISCONNECTED or not is_client(dispatcher):
                self.fail(fd, dispatcher, doing, error)
            elif self.map.get(fd) is dispatcher:
                with self.guard(dispatcher, "closing it (the peer went away)"):
                    dispatcher.handle_close()
        except Exception as error:
            self.fail(fd, dispatcher, doing, error)

    @contextlib.contextmanager
    def guard(self, dispatcher: wasyncore.dispatcher, doing: str) -> Iterator[None]:
        """Run work on one dispatcher between turns: a fault closes that one (see `fail`), not the loop."""
        fd = dispatcher._fileno
        try:
            yield
        except Exception as error:
            self.fail(fd, dispatcher, doing, error)

    def fail(self, fd: int | None, dispatcher: wasyncore.dispatcher, doing: str, error: Exception) -> None:
        """Log the fault, and close the dispatcher if it is a client's connection (the service goes on)."""
        self.faults.record(doing, client_of(dispatcher), error)
        if is_client(dispatcher):
            self.close(fd, dispatcher)

    def forget(self, fd: int, dispatcher: wasyncore.dispatcher) -> None:
        """A dispatcher whose socket was closed without leaving the map (a bug: logged): out of the map."""
        self.faults.record("finding a closed socket left in the event loop's map", client_of(dispatcher), None)
        self.close(fd, dispatcher)

    def close(self, fd: int | None, dispatcher: wasyncore.dispatcher) -> None:
        """Close a connection at once (no lingering) and make sure it is out of the map, whatever its own
        close does."""
        try:
            getattr(dispatcher, "close_now", dispatcher.handle_close)()
        except Exception as error:
            self.faults.record("closing a faulty connection", client_of(dispatcher), error)
            with contextlib.suppress(Exception):
                wasyncore.dispatcher.close(dispatcher)
        if fd is not None and self.map.get(fd) is dispatcher:
            del self.map[fd]
        server = getattr(dispatcher, "server", None)
        channels = getattr(server, "active_channels", {})
        if fd is not None and channels.get(fd) is dispatcher:
            del channels[fd]
        sock, dispatcher.socket = dispatcher.socket, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()
        dispatcher.connected = False
