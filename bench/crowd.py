"""A hostile crowd at scale, randomised and seeded, while a probe times fresh clients: does the server hold?

One `random.Random(seed)` plans every connection of the crowd (`plan_crowd`): when it arrives (half of them in
a surge in the first second, the rest spread over most of the run, so the crowd passes APP_CONNECTION_LIMIT),
how it behaves (BEHAVIOURS, drawn by their shares), what it sends, how slowly, and when it leaves. `run_crowd`
plays the plan on one thread with non-blocking sockets and a selector, so thousands of sockets cost little CPU,
and stops by itself after the planned seconds, closing what is still open. Meanwhile a probe thread opens a
fresh connection every PROBE_INTERVAL seconds and times `GET /health`.

`stand` runs both against a server (`LocalService`: `python -m service` on loopback; `ContainerService`: an
image, straight to the container's address) and says whether it held: the server never exited, its log holds
no "Traceback" and no "CRITICAL", no worker process was replaced, every probe was answered 200 within
PROBE_BOUND seconds, and once the crowd had left its open descriptors came back to their idle count.
Loopback and the project's own containers only. The seed is printed, and replays the same plan:

    python -m bench.crowd --seed SEED [--seconds S] [--connections N] [--image TAG] [--env APP_X=V ...]
"""

import argparse
import contextlib
import errno
import heapq
import ipaddress
import json
import random
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from images.docker import ROOT, docker, progress

from .containers import CONTAINER_PORT, answers_while, container_ip, free_port, host_pid, is_running, running
from .processes import allow_open_files, child_pids, open_descriptors, start_service, stop_process

BEHAVIOURS = {  # what a connection of the crowd does, and its share of the crowd
    "silent": 0.15,  # connects and sends nothing
    "header drip": 0.20,  # a request head, one byte at a time
    "body drip": 0.10,  # a whole head with Content-Length, then the body one byte at a time
    "chunked unfinished": 0.10,  # a chunked body whose last chunk never comes
    "pipelined burst": 0.10,  # many requests in one write; half of these never read the answers
    "half close": 0.10,  # part of a request or all of it, then shutdown(SHUT_WR)
    "reset": 0.10,  # nothing, part or all of a request, then SO_LINGER 0 and close: a reset
    "refused": 0.05,  # a request the server refuses (400), then silence: the client stays connected
    "well formed": 0.10,  # one request, its answer read
}
# Requests in one pipelined burst: past the 4 the service parses ahead, and few enough that the crowd tests
# lockout, not volume (bursts of up to 100 from a tenth of 2,400 connections, half of them in the first second,
# asked a one-worker service for more answers a second than two shared cores give: the soak measures volume).
MAX_BURST = 20
DRIP_SECONDS = (0.02, 4.0)  # the shortest and the longest wait between two dripped bytes
STAYING_SHARE = 0.75  # of the connections stay until the crowd leaves (unless their behaviour ends them)
POLITE = frozenset({"well formed"})  # leave when the server closes; the others stay until their own time
SURGE_SHARE = 0.5  # of the connections arrive within the first second
ARRIVAL_SHARE = 0.8  # the others arrive before this share of the run has passed
PROBE_INTERVAL = 0.5  # seconds between fresh clients
PROBE_TIMEOUT = 5.0  # a fresh client gives up after this long
PROBE_BOUND = 1.0  # every fresh client must be answered within this (the service's guarantee)
SETTLE_SECONDS = 15.0  # past the receive timeout (5 s) and the lingering close (2 s): descriptors back by then
SPARE_FILES = 64  # this process's own files beside the crowd's sockets
RETRY_SECONDS = 0.05  # a send the socket's buffer could not take is tried again after this
LOG_ALARMS = ("Traceback", "CRITICAL")
PATH = "/hello/crowd"
REFUSED = (b"BAD\r\n\r\n", b"GET /x HTTP/1.1\r\n\r\n", b"\x00\xff" * 8 + b"\r\n\r\n")  # not HTTP; no Host


def request(method: str = "GET", *headers: str, body: bytes = b"") -> bytes:
    return (f"{method} {PATH} HTTP/1.1\r\nHost: crowd\r\n" + "".join(f"{h}\r\n" for h in headers)
            + "\r\n").encode() + body


# ---- the plan ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    at: float  # seconds after the connection is established
    action: str  # "send", "shut" (shutdown(SHUT_WR)), "reset" (SO_LINGER 0, close) or "close"
    data: bytes = b""


@dataclass(frozen=True)
class Script:
    behaviour: str
    arrives: float  # seconds after the crowd starts
    reads: bool  # reads what the server sends (and so sees it close the connection)
    steps: tuple[Step, ...]


def dripped(data: bytes, interval: float, until: float, start: float = 0.0) -> list[Step]:
    """`data` one byte every `interval` seconds from `start`, as far as `until` allows."""
    return [Step(start + i * interval, "send", data[i:i + 1]) for i in range(len(data))
            if start + i * interval < until]


def drip_interval(rng: random.Random) -> float:
    """Seconds between two dripped bytes: from DRIP_SECONDS[0] to DRIP_SECONDS[1], as many of each order of
    magnitude (so some finish their request in time and most do not)."""
    low, high = DRIP_SECONDS
    return low * (high / low) ** rng.random()


def prefix(rng: random.Random, data: bytes) -> bytes:
    """Nothing, part, or all of `data`, a third each."""
    return rng.choice((b"", data[:rng.randrange(1, len(data))], data))


def script(rng: random.Random, behaviour: str, arrives: float, seconds: float) -> Script:
    left = seconds - arrives  # most stay to the end, so that the crowd passes the connection limit
    stays = left if rng.random() < STAYING_SHARE else rng.uniform(min(0.5, left), left)
    reads, steps = True, []
    if behaviour == "header drip":
        head = request("GET", "X-Drip: " + "d" * rng.randrange(0, 200))
        steps = dripped(head, drip_interval(rng), stays)
    elif behaviour == "body drip":
        length = rng.randrange(10, 2000)
        steps = [Step(0, "send", request("POST", f"Content-Length: {length}", "Content-Type: text/plain")),
                 *dripped(b"b" * length, drip_interval(rng), stays, start=rng.uniform(0, 0.5))]
    elif behaviour == "chunked unfinished":
        chunks = b"".join(b"%x\r\n%s\r\n" % (n, b"c" * n) for n in (rng.randrange(1, 64) for _ in range(3)))
        head = request("POST", "Transfer-Encoding: chunked", body=chunks + b"40\r\n" + b"c" * rng.randrange(0, 63))
        cut = rng.randrange(1, len(head))
        steps = [Step(0, "send", head[:cut]), Step(rng.uniform(0, min(1.0, stays)), "send", head[cut:])]
    elif behaviour == "pipelined burst":
        reads = rng.random() < 0.5
        steps = [Step(0, "send", request() * rng.randrange(2, MAX_BURST + 1))]
    elif behaviour == "half close":
        steps = [Step(0, "send", prefix(rng, request())), Step(rng.uniform(0, min(1.0, stays)), "shut")]
    elif behaviour == "reset":
        steps = [Step(0, "send", prefix(rng, request())), Step(rng.uniform(0, min(3.0, stays)), "reset")]
    elif behaviour == "refused":
        steps = [Step(0, "send", rng.choice(REFUSED))]
    elif behaviour == "well formed":
        steps = [Step(0, "send", request("GET", *rng.choice(((), ("Connection: close",)))))]
    elif behaviour != "silent":
        raise ValueError(f"unknown behaviour {behaviour!r}: one of {', '.join(BEHAVIOURS)}")
    steps = [step for step in steps if step.action != "send" or step.data]
    if not steps or steps[-1].action != "reset":
        steps.append(Step(stays, "close"))
    return Script(behaviour, arrives, reads, tuple(steps))


def plan_crowd(seed: int, connections: int, seconds: float) -> list[Script]:
    """Every connection of the crowd, in order of arrival; the same seed gives the same plan."""
    rng = random.Random(seed)
    names, shares = list(BEHAVIOURS), list(BEHAVIOURS.values())
    surge = int(connections * SURGE_SHARE)
    arrivals = sorted([rng.uniform(0, min(1.0, seconds)) for _ in range(surge)]
                      + [rng.uniform(0, seconds * ARRIVAL_SHARE) for _ in range(connections - surge)])
    return [script(rng, rng.choices(names, shares)[0], arrives, seconds) for arrives in arrivals]


# ---- playing it ----------------------------------------------------------------------------------------------

@dataclass
class Tally:
    """One behaviour's connections: what they did and what the server did to them."""
    opened: int = 0  # sockets made and connecting
    connected: int = 0
    not_connected: int = 0  # refused, or still connecting when the crowd left
    answered: int = 0  # received at least one status line
    answers: int = 0  # status lines received
    closed_by_server: int = 0  # the server closed or reset the connection before the client left


@dataclass(eq=False)
class Connection:
    script: Script
    sock: socket.socket | None
    tally: Tally
    next_step: int = 0
    connected_at: float | None = None
    answered: bool = False
    closed_by_server: bool = False
    unsent: bytes = b""


@dataclass
class CrowdOutcome:
    seconds: float
    cpu_seconds: float  # this process's, crowd and probe together
    peak_open: int  # sockets the crowd held open at once
    unopened: int  # sockets this process could not make (its open-file limit)
    by_behaviour: dict[str, Tally] = field(default_factory=dict)


def allowed_host(host: str) -> str:
    """The crowd goes to loopback or to one of the project's containers on a private bridge, nowhere else."""
    address = ipaddress.ip_address(host)
    if not (address.is_loopback or address.is_private):
        raise ValueError(f"the crowd goes only to loopback or to the project's own containers, not {host}")
    return host


class Crowd:
    """Plays a plan on one thread: non-blocking sockets, one selector, one heap of due steps."""

    def __init__(self, host: str, port: int, plan: list[Script], seconds: float) -> None:
        self.address = (allowed_host(host), port)
        self.family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
        self.plan, self.seconds = plan, seconds
        self.selector = selectors.DefaultSelector()
        self.due: list[tuple[float, int, Connection]] = []  # (when, tie-breaker, connection)
        self.open: set[Connection] = set()
        self.outcome = CrowdOutcome(seconds, 0.0, 0, 0, {name: Tally() for name in BEHAVIOURS})
        self.counter = 0

    def run(self) -> CrowdOutcome:
        allow_open_files(len(self.plan) + SPARE_FILES)
        started, cpu = time.monotonic(), time.process_time()
        deadline, arrivals = started + self.seconds, iter(self.plan)
        upcoming = next(arrivals, None)
        try:
            while (now := time.monotonic()) < deadline:
                while upcoming is not None and started + upcoming.arrives <= now:
                    self.connect(upcoming)
                    upcoming = next(arrivals, None)
                while self.due and self.due[0][0] <= now:
                    self.act(heapq.heappop(self.due)[2], now)
                wake = min([deadline, *([self.due[0][0]] if self.due else []),
                            *([started + upcoming.arrives] if upcoming is not None else [])])
                for key, events in self.selector.select(max(0.0, wake - time.monotonic())):
                    self.ready(key.data, events)
        finally:
            for connection in list(self.open):
                self.leave(connection, by_server=False)
            self.selector.close()
        self.outcome.cpu_seconds = time.process_time() - cpu
        return self.outcome

    def schedule(self, connection: Connection, when: float) -> None:
        self.counter += 1
        heapq.heappush(self.due, (when, self.counter, connection))

    def connect(self, plan: Script) -> None:
        tally = self.outcome.by_behaviour[plan.behaviour]
        try:
            sock = socket.socket(self.family, socket.SOCK_STREAM)
        except OSError:
            self.outcome.unopened += 1
            return
        sock.setblocking(False)
        connection = Connection(plan, sock, tally)
        tally.opened += 1
        self.open.add(connection)
        self.outcome.peak_open = max(self.outcome.peak_open, len(self.open))
        if sock.connect_ex(self.address) not in (0, errno.EINPROGRESS):
            self.leave(connection, by_server=False)
            return
        self.selector.register(sock, selectors.EVENT_WRITE, connection)

    def ready(self, connection: Connection, events: int) -> None:
        if connection.sock is None:
            return
        if connection.connected_at is None:
            if connection.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                self.leave(connection, by_server=False)
                return
            connection.connected_at = time.monotonic()
            connection.tally.connected += 1
            if connection.script.reads:
                self.selector.modify(connection.sock, selectors.EVENT_READ, connection)
            else:
                self.selector.unregister(connection.sock)
            self.schedule(connection, connection.connected_at + connection.script.steps[0].at)
            return
        if events & selectors.EVENT_READ:
            self.receive(connection)

    def receive(self, connection: Connection) -> None:
        try:
            data = connection.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the server closed: a polite client leaves too, a hostile one stays and stops reading
            if connection.script.behaviour in POLITE:
                self.leave(connection, by_server=True)
            else:
                self.server_closed(connection)
                self.selector.unregister(connection.sock)
            return
        seen = data.count(b"HTTP/1.1 ")
        connection.tally.answers += seen
        if seen and not connection.answered:
            connection.answered = True
            connection.tally.answered += 1

    def act(self, connection: Connection, now: float) -> None:
        if connection.sock is None:
            return
        step = connection.script.steps[connection.next_step]
        try:
            if step.action == "send":
                data = connection.unsent or step.data
                sent = connection.sock.send(data)
                connection.unsent = data[sent:]
                if connection.unsent:
                    self.schedule(connection, now + RETRY_SECONDS)
                    return
            elif step.action == "shut":
                connection.sock.shutdown(socket.SHUT_WR)
            elif step.action == "reset":
                connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.leave(connection, by_server=False)
                return
            else:
                self.leave(connection, by_server=False)
                return
        except BlockingIOError:
            self.schedule(connection, now + RETRY_SECONDS)
            return
        except OSError:
            self.leave(connection, by_server=True)
            return
        connection.next_step += 1
        self.schedule(connection, connection.connected_at + connection.script.steps[connection.next_step].at)

    def leave(self, connection: Connection, by_server: bool) -> None:
        if connection.sock is None:
            return
        if connection.connected_at is None and not by_server:
            connection.tally.not_connected += 1  # refused, or still connecting when the crowd left
        if by_server:
            self.server_closed(connection)
        with contextlib.suppress(KeyError, ValueError):
            self.selector.unregister(connection.sock)
        connection.sock.close()
        connection.sock = None
        self.open.discard(connection)

    @staticmethod
    def server_closed(connection: Connection) -> None:
        if not connection.closed_by_server:
            connection.closed_by_server = True
            connection.tally.closed_by_server += 1


def run_crowd(host: str, port: int, seed: int, connections: int, seconds: float) -> CrowdOutcome:
    """The crowd `seed` plans, played against host:port for `seconds`."""
    return Crowd(host, port, plan_crowd(seed, connections, seconds), seconds).run()


# ---- the probe -----------------------------------------------------------------------------------------------

def health_seconds(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> float | None:
    """Seconds for a new connection's GET /health to be answered 200, or None (not within `timeout`)."""
    started = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            connection.sendall(b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            answer = b""
            while b"\r\n" not in answer:
                chunk = connection.recv(64)
                if not chunk:
                    break
                answer += chunk
    except OSError:
        return None
    return time.perf_counter() - started if answer.startswith(b"HTTP/1.1 200") else None


class Probe(threading.Thread):
    """A fresh client every PROBE_INTERVAL seconds until stopped; between them, the server's descriptors."""

    def __init__(self, host: str, port: int, descriptors: Callable[[], int]) -> None:
        super().__init__(name="crowd probe", daemon=True)
        self.host, self.port, self.descriptors = host, port, descriptors
        self.stopping = threading.Event()
        self.answers: list[float | None] = []
        self.peak_descriptors = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            started = time.monotonic()
            self.answers.append(health_seconds(self.host, self.port))
            self.peak_descriptors = max(self.peak_descriptors, self.descriptors())
            self.stopping.wait(max(0.0, PROBE_INTERVAL - (time.monotonic() - started)))

    def stop(self) -> None:
        self.stopping.set()
        self.join()


def probe_summary(answers: list[float | None]) -> dict:
    timely = [s for s in answers if s is not None and s <= PROBE_BOUND]
    served = sorted(s for s in answers if s is not None)

    def percentile(share: float) -> float | None:
        return served[min(len(served) - 1, int(share * len(served)))] if served else None

    return {"probes": len(answers), "answered": len(served), "within_bound": len(timely),
            "failures": len(answers) - len(timely), "p50_seconds": statistics.median(served) if served else None,
            "p99_seconds": percentile(0.99), "max_seconds": served[-1] if served else None,
            "bound_seconds": PROBE_BOUND, "timeout_seconds": PROBE_TIMEOUT,
            "each_seconds": [None if s is None else round(s, 4) for s in answers]}  # in order; None: unanswered


# ---- the servers ---------------------------------------------------------------------------------------------

class Served(Protocol):
    """A server the crowd may stand against: where it listens, its processes, whether it runs, its log."""
    host: str
    port: int

    def pids(self) -> list[int]: ...

    def alive(self) -> bool: ...

    def log(self) -> str: ...

    def exit_code(self) -> int | None: ...


@dataclass
class LocalService:
    """`python -m service` on loopback, as a host process (its workers are its children)."""
    process: subprocess.Popen
    port: int
    log_file: Path
    host: str = "127.0.0.1"

    def pids(self) -> list[int]:
        return [self.process.pid, *child_pids(self.process.pid)] if self.alive() else []

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")

    def exit_code(self) -> int | None:
        return self.process.poll()


@dataclass
class ContainerService:
    """A container of the project's images, reached straight at its bridge address (no port proxy)."""
    name: str
    host: str
    first_pid: int  # its first process as the host sees it; its workers are that process's children
    port: int = CONTAINER_PORT

    def pids(self) -> list[int]:
        return [self.first_pid, *child_pids(self.first_pid)] if Path(f"/proc/{self.first_pid}").exists() else []

    def alive(self) -> bool:
        return is_running(self.name)

    def log(self) -> str:
        logs = docker("logs", self.name, check=False, quiet=True)
        return logs.stdout + logs.stderr

    def exit_code(self) -> int | None:
        state = docker("inspect", "--format", "{{.State.Running}} {{.State.ExitCode}}", self.name, quiet=True)
        running_now, code = state.stdout.split()
        return None if running_now == "true" else int(code)


@contextlib.contextmanager
def local_service(settings: dict[str, str], root: Path = ROOT) -> Iterator[LocalService]:
    """The service from the checkout at `root`, answering /health, with `settings`; stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="hello-api-crowd-") as work:
        port, log = free_port(), Path(work) / "service.log"
        process = start_service(port, log, settings, root)
        try:
            if not answers_while(lambda: process.poll() is None, port, seconds=15):
                raise RuntimeError(f"python -m service ({root}) never answered: {log.read_text()[-500:]}")
            yield LocalService(process, port, log)
        finally:
            if process.poll() is None:
                stop_process(process)


@contextlib.contextmanager
def container_service(tag: str, settings: dict[str, str]) -> Iterator[ContainerService]:
    with running(tag, *(f"-e{key}={value}" for key, value in settings.items())) as (name, _):
        yield ContainerService(name, container_ip(name), host_pid(name))


# ---- standing against it -------------------------------------------------------------------------------------

def idle_descriptors(server: Served) -> int:
    """The server's open descriptors at rest: the same count twice in a row, 0.2 s apart."""
    previous = -1
    for _ in range(50):
        count = open_descriptors(server.pids())
        if count == previous:
            return count
        previous = count
        time.sleep(0.2)
    return previous


def settled_descriptors(server: Served, idle: int) -> int:
    """The server's open descriptors once they are back at `idle`, or as many as remain after SETTLE_SECONDS."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while (count := open_descriptors(server.pids())) != idle and time.monotonic() < deadline and server.alive():
        time.sleep(0.1)
    return count


def log_alarms(log: str) -> list[str]:
    return [line for line in log.splitlines() if any(alarm in line for alarm in LOG_ALARMS)]


def stand(server: Served, seed: int, connections: int, seconds: float) -> dict:
    """The crowd `seed` plans against `server`, a probe beside it; what happened, and whether the server held."""
    for _ in range(3):  # warm: the first answers open what the server then keeps (its log, its imports)
        health_seconds(server.host, server.port)
    pids, idle = server.pids(), idle_descriptors(server)
    progress(f"crowd: seed {seed}, {connections} connections for {seconds:g}s against {server.host}:{server.port}")
    probe = Probe(server.host, server.port, lambda: open_descriptors(server.pids()))
    probe.start()
    try:
        crowd = run_crowd(server.host, server.port, seed, connections, seconds)
    finally:
        probe.stop()
    after = settled_descriptors(server, idle)
    alive = server.alive()
    replaced = sorted(set(pids) - set(server.pids())) if alive else []
    alarms = log_alarms(server.log())
    probes = probe_summary(probe.answers)
    reasons = []
    if not alive:
        reasons.append(f"the server exited (code {server.exit_code()})")
    if alarms:
        reasons.append(f"its log has {len(alarms)} line(s) with {' or '.join(LOG_ALARMS)}: {alarms[0][:200]}")
    if replaced:
        reasons.append(f"process(es) {', '.join(map(str, replaced))} ended and were replaced")
    if probes["failures"]:
        unanswered = probes["probes"] - probes["answered"]
        reasons.append(f"{probes['failures']} of {probes['probes']} fresh clients were not answered 200 within "
                       f"{PROBE_BOUND:g} s ({unanswered} not at all: reset, closed or timed out; "
                       f"{probes['failures'] - unanswered} later)")
    if alive and after != idle:
        reasons.append(f"{after} open descriptors {SETTLE_SECONDS:g} s after the crowd left, against {idle} idle")
    return {"seed": seed, "connections": connections, "seconds": seconds, "design": design(), "crowd": asdict(crowd),
            "probe": probes, "alive": alive, "exit_code": None if alive else server.exit_code(),
            "log_alarms": alarms[:10], "processes": len(pids), "processes_replaced": replaced,
            "descriptors": {"idle": idle, "peak": probe.peak_descriptors, "after": after},
            "held": not reasons, "reasons": reasons}


def design() -> dict:
    """What the crowd and the probe were made of, kept beside their figures."""
    return {"behaviours": BEHAVIOURS, "surge_share": SURGE_SHARE, "arrival_share": ARRIVAL_SHARE,
            "staying_share": STAYING_SHARE, "drip_seconds": list(DRIP_SECONDS),
            "probe_interval_seconds": PROBE_INTERVAL, "probe_timeout_seconds": PROBE_TIMEOUT,
            "probe_bound_seconds": PROBE_BOUND, "settle_seconds": SETTLE_SECONDS}


def new_seed() -> int:
    return random.SystemRandom().randrange(2**32)


def replay_command(seed: int, connections: int, seconds: float, settings: dict[str, str],
                   image: str | None = None) -> str:
    """The command that plays the same crowd against the same server again."""
    parts = ["python", "-m", "bench.crowd", "--seed", str(seed), "--connections", str(connections),
             "--seconds", f"{seconds:g}", *(["--image", image] if image else []),
             *(arg for key, value in settings.items() for arg in ("--env", f"{key}={value}"))]
    return " ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crowd", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=None, help="replay this crowd (default: a new seed)")
    parser.add_argument("--connections", type=int, default=1500)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--image", help="an image of the project (default: python -m service on loopback)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose service runs on loopback")
    parser.add_argument("--env", action="append", default=[], metavar="APP_X=VALUE", help="a setting; repeatable")
    options = parser.parse_args(argv)
    seed = new_seed() if options.seed is None else options.seed
    settings = dict(item.split("=", 1) for item in options.env)
    server = container_service(options.image, settings) if options.image else local_service(settings, options.root)
    with server as served:
        outcome = stand(served, seed, options.connections, options.seconds)
    print(json.dumps(outcome, indent=2))
    print(f"seed {seed}: " + ("held" if outcome["held"] else "did not hold: " + "; ".join(outcome["reasons"])),
          file=sys.stderr)
    return 0 if outcome["held"] else 1


if __name__ == "__main__":
    sys.exit(main())
