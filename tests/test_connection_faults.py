"""One connection's fault closes that connection only: the service keeps serving every other client.

Two kinds of client stopped the service (exit 1) before: one refused request whose client stayed connected past
the lingering close, and a crowd dripping request heads past the receive timeout. Both led the sweep to close a
connection while the event loop was listing what select() should watch: select() failed with EBADF. The tests
below hold both, then inject a fault into each path the service adds to waitress (tests/hooked_service.py)
and check that only the faulty connection is closed, the fault is logged, and a fresh client is answered.
"""

import contextlib
import signal
import socket
import time

import pytest
from conftest import wait_until
from hooked_service import FAULT_MARKER
from raw_http import (
    DRIPPING_REQUEST,
    address,
    assert_fresh_client_is_answered,
    closed_by,
    connect,
    held_by,
    held_connections,
    read_answer,
    read_until_closed,
    request,
    unread_bytes_at_server,
)
from support import allow_open_files
from waitress import wasyncore

from service.transport.channel import LINGER_SECONDS
from service.transport.event_loop import READ, EventLoop, FaultLog

FRESH_CLIENT_SECONDS = 1.0
MARKED = f"{FAULT_MARKER.decode()}: yes"


def wait_until_closed_by_the_service(running, client: socket.socket) -> None:
    wait_until(lambda: closed_by(running.process.pid, client), "the service closing the connection",
               seconds=LINGER_SECONDS + 5)


def assert_serving(running) -> None:
    """Still running, and a fresh client is answered within FRESH_CLIENT_SECONDS."""
    assert running.process.poll() is None, f"the service exited: {running.finish()}"
    assert_fresh_client_is_answered(address(running), seconds=FRESH_CLIENT_SECONDS)


@pytest.mark.parametrize("refused", [b"GET /x HTTP/1.1\r\n\r\n", b"BAD\r\n\r\n"], ids=["no-host", "not-http"])
def test_a_refused_client_that_stays_connected_past_the_lingering_close_leaves_the_service_serving(
        start_service, refused):
    running = start_service()
    with connect(address(running)) as client:
        client.sendall(refused)
        assert read_answer(client).startswith(b"HTTP/1.1 400 ")
        wait_until_closed_by_the_service(running, client)  # the client stays, silent, until then
        assert_serving(running)
    code, _, err = running.stop()
    assert code == 0 and "Traceback" not in err, err


def test_500_clients_dripping_request_heads_past_the_receive_timeout_leave_the_service_serving(start_service):
    """Each is answered 408 after the receive timeout (5 s), then lingers while it drips on, then is closed."""
    allow_open_files(2048)
    running = start_service({"APP_LOG_LEVEL": "WARNING"})
    with held_connections(address(running), 500, DRIPPING_REQUEST) as held:
        for _ in range(6):  # 12 s: past the timeout, the 408s and the lingering closes
            time.sleep(2)
            for connection in held:
                with contextlib.suppress(OSError):
                    connection.sendall(b"a")
            assert_serving(running)
    code, _, err = running.stop()
    assert code == 0 and "Traceback" not in err, err


# ---- a fault injected into each path, for one marked connection -----------------------------------------

def reading(running) -> socket.socket:
    marked = connect(address(running))
    marked.sendall(request("/health", "GET", MARKED))
    return marked


def answering_and_closing(running) -> socket.socket:
    marked = connect(address(running))
    marked.sendall(request("/health", "GET", MARKED, "Connection: close"))
    return marked


def sending_half_a_request(running) -> socket.socket:
    marked = connect(address(running))
    marked.sendall(f"GET /health HTTP/1.1\r\n{MARKED}\r\n".encode())
    return marked


def refused_and_staying(running) -> socket.socket:
    marked = connect(address(running))
    marked.sendall(f"BAD {MARKED}\r\n\r\n".encode())
    return marked


def evicted(running) -> socket.socket:
    marked = sending_half_a_request(running)
    pid = running.process.pid  # the marked one is accepted and read first: the oldest, evicted first
    wait_until(lambda: held_by(pid, marked) and unread_bytes_at_server(marked) == 0, "the marked request read")
    crowd = [connect(address(running)) for _ in range(10)]  # the limit is 10: the eleventh evicts
    for connection in crowd:
        connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    running.crowd = crowd
    return marked


def pipelining(running) -> socket.socket:
    marked = connect(address(running))
    marked.sendall(b"".join(request(f"/hello/n{i}", "GET", MARKED) for i in range(6)))  # 4 parsed, 2 wait
    return marked


FAULTS = {  # FAULT_IN, settings, what the marked client does, what the log says the service was doing
    "reading": ("reading", {}, reading, "while reading"),
    "asking-ready": ("asking-ready", {}, reading, "while asking whether it is ready"),
    "writing": ("writing", {}, answering_and_closing, "while writing"),
    "408": ("timing-out", {"APP_RECEIVE_TIMEOUT": "1"}, sending_half_a_request,
            "while timing out its request (APP_RECEIVE_TIMEOUT)"),
    "lingering-close": ("closing", {}, refused_and_staying, "while closing it after its lingering close"),
    "eviction": ("closing", {"APP_CONNECTION_LIMIT": "10"}, evicted,
                 "while closing it to admit another (APP_CONNECTION_LIMIT)"),
    "pipelining": ("pipelining", {}, pipelining, "while writing"),
}


@pytest.mark.parametrize("case", FAULTS.values(), ids=FAULTS.keys())
def test_a_fault_on_one_connection_closes_it_and_the_service_answers_a_fresh_client(start_service, case):
    fault_in, settings, client, doing = case
    running = start_service({"TEST_SERVICE_HOOKS": "fault_injecting", "FAULT_IN": fault_in, **settings},
                            module="hooked_service")
    running.crowd = []
    marked = client(running)
    try:
        wait_until_closed_by_the_service(running, marked)  # the client stays till then
        assert_serving(running)
    finally:
        marked.close()
        for connection in running.crowd:
            connection.close()
    code, _, err = running.stop()
    assert code == 0, err
    assert f"connection fault, InjectedFault {doing}: deliberate fault in HardenedChannel." in err, err
    assert "Traceback" in err and "uncaught" not in err


def test_a_fault_while_the_drain_closes_an_idle_connection_is_logged_and_the_drain_finishes(start_service):
    running = start_service({"TEST_SERVICE_HOOKS": "fault_injecting", "FAULT_IN": "closing"}, module="hooked_service")
    with connect(address(running)) as marked:
        marked.sendall(request("/health", "GET", MARKED))
        assert b" 200 " in read_answer(marked)  # answered; the connection stays, idle
        code, _, err = running.stop(signal.SIGTERM)
    assert code == 0, err
    assert "connection fault, InjectedFault while closing it idle (the drain)" in err, err
    assert "Stopped cleanly" in err


def test_a_flood_of_one_fault_logs_one_traceback_and_then_a_count(start_service):
    running = start_service({"TEST_SERVICE_HOOKS": "fault_injecting", "FAULT_IN": "reading",
                             "APP_LOG_LEVEL": "WARNING"}, module="hooked_service")
    for _ in range(30):
        with reading(running) as marked:
            read_until_closed(marked, 5)
    assert_serving(running)
    code, _, err = running.stop()
    assert code == 0, err
    assert err.count("Traceback") == 1, err
    assert "connection fault, InjectedFault while reading: 29 more time(s)" in err, err


# ---- the loop itself, in this process ----------------------------------------------------------------------

class Recorded:
    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, *args, **kwargs) -> None:
        self.lines.append(args[0] % args[1:])


def test_fault_log_writes_each_kind_at_once_then_one_count_a_period(monkeypatch):
    now = [0.0]
    faults, written = FaultLog(period=60, clock=lambda: now[0]), Recorded()
    monkeypatch.setattr("service.transport.event_loop.log.error", written)
    for _ in range(5):
        faults.record("reading", "127.0.0.1", ValueError("x"))
    faults.record("writing", "127.0.0.1", ValueError("y"))
    faults.flush()
    assert len(written.lines) == 2  # one of each kind; the four more readings wait for the period
    now[0] = 61
    faults.flush()
    assert written.lines[2].startswith("connection fault, ValueError while reading: 4 more time(s) in the last 61s")
    faults.flush(force=True)
    assert len(written.lines) == 3 and faults.total == 6


def test_a_closed_socket_left_in_the_map_is_taken_out_before_select_sees_it(monkeypatch):
    ours, theirs = socket.socketpair()
    dispatcher = wasyncore.dispatcher(ours, map={})
    loop_map = {ours.fileno(): dispatcher}
    loop = EventLoop(loop_map, use_poll=False, faults=FaultLog())
    ours.close()  # closed behind the loop's back
    theirs.close()
    written = Recorded()
    monkeypatch.setattr("service.transport.event_loop.log.error", written)
    loop.turn(timeout=0.01)  # select() on the closed descriptor would raise EBADF
    assert loop_map == {}
    assert written.lines and "closed socket left in the event loop's map" in written.lines[0]


class NeverReady(wasyncore.dispatcher):
    def readable(self) -> bool:
        raise RuntimeError("deliberate fault in readable()")


def test_a_listening_socket_that_faults_is_kept_and_the_fault_logged(monkeypatch):
    loop_map: dict = {}
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        listener = NeverReady(listening, map=loop_map)
        listener.accepting = True
        written = Recorded()
        monkeypatch.setattr("service.transport.event_loop.log.error", written)
        EventLoop(loop_map, use_poll=False, faults=FaultLog()).turn(timeout=0.01)
        assert loop_map == {listening.fileno(): listener} and listener.socket is listening  # closing it would
        assert "RuntimeError while asking whether it is ready" in written.lines[0]  # stop the service


class Recording(wasyncore.dispatcher):
    def __init__(self, sock: socket.socket, loop_map: dict, handled: list, accepting: bool) -> None:
        super().__init__(sock, map=loop_map)
        self.accepting, self.handled = accepting, handled

    def handle_read_event(self) -> None:
        self.handled.append("listening socket" if self.accepting else "connection")


def test_a_turn_reads_connections_before_it_admits_new_ones():
    """So a client accepted in the last turn has its request read before an arrival over the connection limit
    could close it as one still waiting for its request."""
    loop_map: dict = {}
    handled: list[str] = []
    ours, theirs = socket.socketpair()
    with socket.socket() as listening, ours, theirs:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        Recording(listening, loop_map, handled, accepting=True)  # first in the map, as in the service
        Recording(ours, loop_map, handled, accepting=False)
        EventLoop(loop_map, use_poll=False, faults=FaultLog()).dispatch(
            [(listening.fileno(), READ), (ours.fileno(), READ)])
    assert handled == ["connection", "listening socket"]
