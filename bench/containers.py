"""Containers as every study uses them: start one, wait until it answers, stop it and read its exit code,
read its memory. They work wherever the engine is (this machine, Docker Desktop's VM, a remote tcp:// or
ssh:// engine) and for any image, with no shell or Python inside: memory comes from the engine's stats, and
ports are published where this machine reaches them. Where the engine runs on this machine, /proc adds what
only it can see: the first process's RSS and the ports a container listens on."""

import functools
import http.client
import ipaddress
import os
import random
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from images.docker import docker, engine_endpoint, engine_get, free_port, inspect_image

CONTAINER_PORT = 5000  # the service's APP_PORT default
READY_PATH = "/health"
READY_SECONDS = 30.0
POLL_SECONDS = 0.005


def unique_name(prefix: str = "hello-api-bench") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


ENGINE_ADDRESS_VARIABLE = "BENCH_ENGINE_ADDRESS"


@functools.cache
def engine_address() -> str:
    """Where this machine reaches the ports the engine publishes: loopback for an engine on a local socket
    (Docker Desktop forwards its VM's ports there too), the engine's host for tcp:// and ssh://, or
    $BENCH_ENGINE_ADDRESS (a tunnel, a NAT)."""
    if configured := os.environ.get(ENGINE_ADDRESS_VARIABLE):
        return configured
    endpoint = urllib.parse.urlsplit(engine_endpoint())
    if endpoint.scheme in ("tcp", "ssh", "http", "https") and endpoint.hostname:
        return endpoint.hostname
    return "127.0.0.1"


def engine_is_remote() -> bool:
    """Whether published ports are reached away from loopback (a remote engine or $BENCH_ENGINE_ADDRESS)."""
    try:
        return not ipaddress.ip_address(engine_address()).is_loopback
    except ValueError:
        return engine_address() != "localhost"


def host_port() -> int:
    """A port to publish a container on: a free loopback port here; on a remote engine, whose free ports
    this machine cannot see, one drawn below Linux's ephemeral range (the engine refuses one in use)."""
    return random.randrange(20000, 32768) if engine_is_remote() else free_port()


def publish(name: str, port: int, container_port: int = CONTAINER_PORT) -> list[str]:
    """`docker run` options: a named container with `container_port` published on `port` at the engine's
    loopback (every interface of a remote engine, which this machine reaches from outside)."""
    bind = "0.0.0.0" if engine_is_remote() else "127.0.0.1"
    return ["--name", name, "-p", f"{bind}:{port}:{container_port}"]


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
    port: int  # published to the container's port, at `host`

    @property
    def host(self) -> str:
        return engine_address()


class NotReady(RuntimeError):
    """A container that did not answer: the message says what it did instead and what to try."""


def host_pid(name: str) -> int:
    """The container's first process as the engine's host sees it (0 once it has exited)."""
    return int(docker("inspect", "--format", "{{.State.Pid}}", name, quiet=True).stdout.strip() or 0)


def exit_code(name: str) -> int:
    return int(docker("inspect", "--format", "{{.State.ExitCode}}", name, quiet=True).stdout)


def container_ip(name: str) -> str:
    """A container's address on Docker's default bridge: the route to it without the port proxy."""
    return docker("inspect", "--format", "{{.NetworkSettings.IPAddress}}", name, quiet=True).stdout.strip()


def memory_kib(name: str) -> int:
    """The container's anonymous memory, every process in it (heaps, stacks; not the page cache or mapped
    files, which the kernel can drop), from the engine's stats: cgroup v2's `anon`, v1's `total_rss`."""
    stats = engine_get(f"/containers/{name}/stats?stream=false&one-shot=true").get("memory_stats", {})
    for key in ("anon", "total_rss", "rss"):
        if key in stats.get("stats", {}):
            return stats["stats"][key] // 1024
    raise RuntimeError(f"the engine's stats for {name} hold no anonymous memory (cgroup v2 anon, v1 rss): "
                       f"is it still running? memory_stats: {str(stats)[:200]}")


def cpu_ns(name: str) -> int:
    """CPU time (user + system) every process of the container has used so far, in ns: its cgroup's usage,
    from the engine's stats, so it is read wherever the engine runs. Docker's port proxy is outside it."""
    stats = engine_get(f"/containers/{name}/stats?stream=false&one-shot=true").get("cpu_stats", {})
    used = stats.get("cpu_usage", {}).get("total_usage")
    if not used:  # a running container has used some CPU: 0 or nothing means the engine gave no figure
        raise RuntimeError(f"the engine's stats for {name} hold no CPU usage: is it still running? "
                           f"cpu_stats: {str(stats)[:200]}")
    return used


def local_pid(name: str) -> int | None:
    """The container's first process in this machine's /proc, or None where the engine runs elsewhere (Docker
    Desktop's VM, a remote engine, an engine in another PID namespace): its pid there names another process
    here or none, so the process must sit in a cgroup named for the container's ID."""
    found = docker("inspect", "--format", "{{.State.Pid}} {{.Id}}", name, check=False, quiet=True).stdout.split()
    if len(found) != 2 or found[0] == "0":
        return None
    pid, container_id = found
    try:
        return int(pid) if container_id in Path(f"/proc/{pid}/cgroup").read_text() else None
    except OSError:
        return None


def rss_kib(name: str) -> int:
    """VmRSS of the container's first process from this machine's /proc (what runs before format 4 of the
    image study reported as memory); RuntimeError where the engine is not on this machine."""
    pid = local_pid(name)
    if pid is None:
        raise RuntimeError(f"{name}'s processes are not on this machine (the engine runs in a VM, on another "
                           "machine or in another PID namespace): its RSS is read only where the engine runs")
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError as unreadable:
        raise RuntimeError(f"cannot read /proc/{pid}/status ({unreadable.strerror}): is {name} still running?") \
            from None
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
    pid = local_pid(name)
    # Where the engine runs elsewhere, its sockets are out of sight: the ports its image declares stand in.
    ports, does = (sorted(listening_ports(pid)), "listens on") if pid else (exposed_ports(tag), "declares EXPOSE")
    if ports and container_port not in ports:
        return f"{tag} {does} port(s) {', '.join(map(str, ports))}, not {container_port}: pass --port {ports[0]}"
    return (f"{tag} never answered GET {path} with a 2xx within {seconds:.0f} s ({does} "
            f"{', '.join(map(str, ports)) or 'no port'}): pass --ready with a path that answers 2xx; its last "
            f"log lines: {tail}")


def exposed_ports(tag: str) -> list[int]:
    """The TCP ports an image declares with EXPOSE (the image's: a container adds the ports it publishes)."""
    declared = inspect_image(tag, ".Config.ExposedPorts") or {}
    return sorted(int(port.split("/")[0]) for port in declared if port.endswith("/tcp"))


@contextmanager
def running(tag: str, *args: str, container_port: int = CONTAINER_PORT, ready: str = READY_PATH,
            seconds: float = READY_SECONDS, command: tuple[str, ...] = ()) -> Iterator[Ready]:
    """A detached container of `tag` (`docker run` options `args`, then `command`), ready (GET `ready`
    answered 2xx), with `container_port` published where this machine reaches the engine (engine_address());
    removed afterwards. NotReady says why, when it never answered."""
    name, port, host = unique_name(), host_port(), engine_address()
    docker("run", "-d", *publish(name, port, container_port), *args, tag, *command, quiet=True)
    try:
        if not answers_while(lambda: is_running(name), port, ready, seconds, host):
            raise NotReady(why_not_ready(tag, name, container_port, ready, seconds))
        yield Ready(name, port)
    finally:
        remove(name)


def is_running(name: str) -> bool:
    state = docker("inspect", "--format", "{{.State.Running}}", name, check=False, quiet=True)
    return state.stdout.strip() == "true"


def answers_while(alive: Callable[[], bool], port: int, path: str = READY_PATH,
                  seconds: float = READY_SECONDS, host: str = "127.0.0.1") -> bool:
    """answers(), asking alive() every half second: a server (a container, a process) that is gone is not
    waited for. Not for timed starts: for a container, the question costs a Docker call."""
    deadline = time.perf_counter() + seconds
    while (left := deadline - time.perf_counter()) > 0:
        if answers(port, path, host, seconds=min(0.5, left)):
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
