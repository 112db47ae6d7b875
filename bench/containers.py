"""Containers as every study uses them: start one, wait until it answers, stop it and read its exit code,
read its memory. Memory and listening ports are read on the host through /proc/<pid> of the container's
first process, so they work for any image: no shell or Python inside is needed."""

import http.client
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from images.docker import docker, free_port

CONTAINER_PORT = 5000  # the service's APP_PORT default
READY_PATH = "/health"
READY_SECONDS = 30.0
POLL_SECONDS = 0.005


def unique_name(prefix: str = "hello-api-bench") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def publish(name: str, port: int, container_port: int = CONTAINER_PORT) -> list[str]:
    """`docker run` options: a named container with `container_port` on a free loopback port."""
    return ["--name", name, "-p", f"127.0.0.1:{port}:{container_port}"]


def get_status(port: int, path: str = READY_PATH, timeout: float = 0.2, host: str = "127.0.0.1") -> int | None:
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None  # the port proxy accepts before the app listens: resets and empty replies mean "not yet"
    finally:
        connection.close()


def answers(port: int, path: str = READY_PATH, host: str = "127.0.0.1", seconds: float = READY_SECONDS) -> bool:
    """Whether GET `path` answers 2xx within `seconds`, polled every 5 ms with short timeouts."""
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        status = get_status(port, path, host=host)
        if status is not None and 200 <= status < 300:
            return True
        time.sleep(POLL_SECONDS)
    return False


class Ready(NamedTuple):
    name: str
    port: int  # on loopback, published to the container's port


class NotReady(RuntimeError):
    """A container that did not answer: the message says what it did instead and what to try."""


def host_pid(name: str) -> int:
    """The container's first process as the host sees it (0 once it has exited)."""
    return int(docker("inspect", "--format", "{{.State.Pid}}", name, quiet=True).stdout.strip() or 0)


def exit_code(name: str) -> int:
    return int(docker("inspect", "--format", "{{.State.ExitCode}}", name, quiet=True).stdout)


def container_ip(name: str) -> str:
    """A container's address on Docker's default bridge: the route to it without the port proxy."""
    return docker("inspect", "--format", "{{.NetworkSettings.IPAddress}}", name, quiet=True).stdout.strip()


def rss_kib(name: str) -> int:
    """VmRSS of the container's first process, from the host's /proc: works for any image."""
    pid = host_pid(name)
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as unreadable:
        raise RuntimeError(f"cannot read /proc/{pid}/status ({unreadable.strerror}): the bench reads a container's "
                           "memory on the Docker engine's host; run it there (not against Docker Desktop's VM or "
                           "a remote DOCKER_HOST)") from None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line: is {name} still running?")


def listening_ports(pid: int) -> set[int]:
    """TCP ports a process's network namespace listens on (state 0A in /proc/<pid>/net/tcp and tcp6)."""
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 3 and fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def why_not_ready(tag: str, name: str, container_port: int, path: str, seconds: float) -> str:
    """What a container that never answered did instead: exited (with its code), listens elsewhere, or
    answered something else; with its last log lines."""
    state = docker("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", name, check=False, quiet=True)
    status, _, code = state.stdout.strip().partition(" ")
    logs = docker("logs", "--tail", "5", name, check=False, quiet=True)
    tail = (logs.stdout + logs.stderr).strip()[-400:] or "(none)"
    if status != "running":
        return f"{tag} exited with code {code} before answering GET {path}; its last log lines: {tail}"
    pid = host_pid(name)
    ports = sorted(listening_ports(pid)) if pid else []
    if ports and container_port not in ports:
        return (f"{tag} listens on port(s) {', '.join(map(str, ports))}, not {container_port}: pass "
                f"--port {ports[0]}")
    return (f"{tag} never answered GET {path} with a 2xx within {seconds:.0f} s (listening on "
            f"{', '.join(map(str, ports)) or 'no port'}): pass --ready with a path that answers 2xx; its last "
            f"log lines: {tail}")


@contextmanager
def running(tag: str, *args: str, container_port: int = CONTAINER_PORT, ready: str = READY_PATH,
            seconds: float = READY_SECONDS) -> Iterator[Ready]:
    """A detached container, ready (GET `ready` answered 2xx), with `container_port` published on a free
    loopback port; removed afterwards. NotReady says why, when it never answered."""
    name, port = unique_name(), free_port()
    docker("run", "-d", *publish(name, port, container_port), *args, tag, quiet=True)
    try:
        if not answers_while(lambda: is_running(name), port, ready, seconds):
            raise NotReady(why_not_ready(tag, name, container_port, ready, seconds))
        yield Ready(name, port)
    finally:
        remove(name)


def is_running(name: str) -> bool:
    state = docker("inspect", "--format", "{{.State.Running}}", name, check=False, quiet=True)
    return state.stdout.strip() == "true"


def answers_while(alive: Callable[[], bool], port: int, path: str = READY_PATH,
                  seconds: float = READY_SECONDS) -> bool:
    """answers(), asking alive() every half second: a server (a container, a process) that is gone is not
    waited for. Not for timed starts: for a container, the question costs a Docker call."""
    deadline = time.perf_counter() + seconds
    while (left := deadline - time.perf_counter()) > 0:
        if answers(port, path, seconds=min(0.5, left)):
            return True
        if not alive():
            return False
    return False


def remove(name: str) -> None:
    docker("rm", "-f", name, check=False, quiet=True)


class Stopped(NamedTuple):
    seconds: float
    exit_code: int


def stop(name: str) -> Stopped:
    """`docker stop` (Docker's default 10 s before SIGKILL): its wall time and the exit code it left."""
    started = time.perf_counter()
    docker("stop", name, quiet=True, timeout=60)
    return Stopped(time.perf_counter() - started, exit_code(name))
