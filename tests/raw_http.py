"""Raw HTTP/1.1 over a socket: send exactly these bytes, read back every answer and whether it closed."""

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

HALF_SENT_REQUEST = b"GET /health HTTP/1.1\r\nHost: x\r\n"  # headers that never end
DRIPPING_REQUEST = b"GET /health HTTP/1.1\r\nX-Slow: "  # a header that never ends


@dataclass
class Answer:
    version: str
    status: int
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case
    body: bytes = b""

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Exchange:
    answers: list[Answer]
    closed: bool  # the server closed the connection (EOF) before the read timed out
    reset: bool = False
    raw: bytes = b""

    @property
    def only(self) -> Answer:
        assert len(self.answers) == 1, f"expected one answer, got {len(self.answers)}: {self.raw[:600]!r}"
        return self.answers[0]


def parse_answers(raw: bytes) -> list[Answer]:
    answers = []
    while raw:
        head, separator, rest = raw.partition(b"\r\n\r\n")
        if not separator:
            break
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ", 2)[:2]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        answers.append(Answer(version, int(status), headers, rest[:length]))
        raw = rest[length:]
    return answers


def address(running) -> tuple[str, int]:
    """Where a started service (tests/conftest.py's start_service) listens."""
    return ("127.0.0.1", running.port)


def connect(address: tuple[str, int], timeout: float = 5.0) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


def read_until_closed(connection: socket.socket, seconds: float) -> tuple[bytes, bool, bool]:
    """(bytes read, closed by the server, reset by the server) within `seconds`."""
    raw, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = connection.recv(65536)
        except TimeoutError:
            return raw, False, False
        except ConnectionResetError:
            return raw, True, True
        if not chunk:
            return raw, True, False
        raw += chunk
    return raw, False, False


def read_answer(connection: socket.socket, seconds: float = 10.0) -> bytes:
    """Read until one whole answer (headers and its Content-Length of body) has arrived; the connection
    stays open."""
    raw, deadline = b"", time.monotonic() + seconds
    while not (answers := parse_answers(raw)) or len(answers[0].body) < int(answers[0].headers.get(
            "content-length", "0")):
        connection.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = connection.recv(65536)
        if not chunk:
            break
        raw += chunk
    return raw


def server_side_connections(port: int) -> int:
    """Connections the server on this IPv4 port still holds open (established, or closed by the client
    and not yet by the server), from /proc/net/tcp."""
    local = f":{port:04X}"
    with open("/proc/net/tcp") as table:
        return sum(1 for line in table.readlines()[1:]
                   if line.split()[1].endswith(local) and line.split()[3] in ("01", "08"))


def server_side(client: socket.socket) -> list[str] | None:
    """The /proc/net/tcp fields of the server's end of this client's IPv4 loopback connection; None while the
    kernel lists no such socket."""
    client_port = client.getsockname()[1]
    server_port = client.getpeername()[1]
    wanted = (f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}")
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if (fields[1], fields[2]) == wanted:
                return fields
    return None


def unread_bytes_at_server(client: socket.socket) -> int | None:
    """Bytes the server has not yet read from this client's IPv4 loopback connection (its receive queue);
    None while the kernel lists no such connection."""
    fields = server_side(client)
    return None if fields is None else int(fields[4].split(":")[1], 16)


def held_by(pid: int, client: socket.socket) -> bool:
    """Process `pid` holds a descriptor for its end of this client's connection (it has accepted it)."""
    fields = server_side(client)
    if fields is None:
        return False
    held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    return f"socket:[{fields[9]}]" in held


def closed_by(pid: int, client: socket.socket) -> bool:
    """Process `pid` has closed its end of this client's connection: the end is shut down (not ESTABLISHED) and
    the process holds no descriptor for it. A lingering close shuts down first (the client reads EOF) and
    closes seconds later: this tells the two apart."""
    fields = server_side(client)
    return fields is None or (fields[3] != "01" and not held_by(pid, client))


def exchange(address: tuple[str, int], payload: bytes, seconds: float = 5.0) -> Exchange:
    """Send `payload` in one write, then read until the server closes or `seconds` pass."""
    with connect(address) as connection:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it may answer and close early
            connection.sendall(payload)
        raw, closed, reset = read_until_closed(connection, seconds)
    return Exchange(parse_answers(raw), closed, reset, raw)


def request(target: str = "/health", method: str = "GET", *headers: str, version: str = "HTTP/1.1",
            body: bytes = b"") -> bytes:
    lines = [f"{method} {target} {version}", "Host: test", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@contextlib.contextmanager
def held_connections(address: tuple[str, int], count: int, sending: bytes = b"") -> Iterator[list[socket.socket]]:
    """`count` hostile clients: connections that each sent `sending` (nothing: silent) and never another byte,
    held open meanwhile; all closed afterwards."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            held.append(connect(address))
            if sending:
                held[-1].sendall(sending)
        yield held
    finally:
        for connection in held:
            connection.close()


def assert_fresh_client_is_answered(address: tuple[str, int], seconds: float = 5.0) -> None:
    """A new client's GET /health is answered 200 within `seconds`."""
    started = time.monotonic()
    answer = exchange(address, request("/health", "GET", "Connection: close"), seconds=seconds)
    assert answer.answers and answer.only.status == 200, f"no answer within {seconds}s: {answer.raw!r}"
    assert time.monotonic() - started < seconds


def assert_json_error(answer: Answer, status: int, error: str) -> None:
    """The service's error form, whoever produced it: JSON, `error` code, advice, the common headers."""
    assert answer.version == "HTTP/1.1"
    assert answer.status == status, answer
    assert answer.headers["content-type"] == "application/json; charset=utf-8"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["connection"] == "close"
    assert answer.json()["error"] == error
    assert len(answer.json()["message"]) > 20
    assert "generated by" not in answer.body.decode()


def access_lines(out: str) -> list[list[str]]:
    return [line.split(" ") for line in out.splitlines()]
