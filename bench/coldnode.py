"""A new node: an engine with an empty image store, reaching a registry over a link of a chosen speed.

The node is a network namespace joined to this machine by a veth pair. The registry (images/registry.py,
Debian's docker-registry) listens on this machine's end; a token bucket (`tc ... tbf`) on that end limits what
it sends, so a pull crosses a link of the chosen rate and the veth counts the bytes it moved. The engine is a
second `dockerd` in the namespace (entered with nsenter, which keeps this machine's /sys and its cgroups),
with a data root of its own, made afresh for every run and removed after it; it pulls from the registry over
plain HTTP (`--insecure-registry`), and its containers use the namespace's network, so the service answers
at the node's address. Root only; Linux only.
"""

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from images import registry
from images.docker import docker, progress

NAMESPACE = "hello-api-node"
HOST_END, NODE_END = "hanode-host", "hanode-node"
HOST_ADDRESS, NODE_ADDRESS = "10.203.0.1", "10.203.0.2"
REGISTRY = f"{HOST_ADDRESS}:5051"
RATE = re.compile(r"(\d+(?:\.\d+)?)([kmg]?)bit")
TICKS_PER_SECOND = 250  # a token bucket must hold at least one timer tick's worth of bytes at its rate


def run(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    progress("$ " + " ".join(command))
    return subprocess.run(command, check=check, capture_output=True, text=True, timeout=120)


def rate_bits(rate: str) -> int:
    """A rate as tc writes it (100mbit, 1gbit) in bits per second."""
    match = RATE.fullmatch(rate)
    if not match:
        raise ValueError(f"{rate!r}: write a rate as tc does, such as 100mbit or 1gbit")
    return int(float(match[1]) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match[2]])


def burst_bytes(rate: str) -> int:
    """The bucket: two timer ticks' worth of bytes at `rate`, and at least 64 KiB."""
    return max(64 * 1024, 2 * rate_bits(rate) // 8 // TICKS_PER_SECOND)


@contextmanager
def link() -> Iterator[None]:
    """The namespace and the veth pair between it and this machine, removed afterwards."""
    run("ip", "netns", "add", NAMESPACE)
    try:
        run("ip", "link", "add", HOST_END, "type", "veth", "peer", "name", NODE_END)
        run("ip", "link", "set", NODE_END, "netns", NAMESPACE)
        run("ip", "addr", "add", f"{HOST_ADDRESS}/30", "dev", HOST_END)
        run("ip", "link", "set", HOST_END, "up")
        for command in (("addr", "add", f"{NODE_ADDRESS}/30", "dev", NODE_END), ("link", "set", NODE_END, "up"),
                        ("link", "set", "lo", "up")):
            run("ip", "netns", "exec", NAMESPACE, "ip", *command)
        yield
    finally:
        run("ip", "link", "del", HOST_END, check=False)
        run("ip", "netns", "del", NAMESPACE, check=False)


def limit(rate: str) -> None:
    """What this machine sends the node (the registry's answers, a pull's bytes) at most `rate`."""
    run("tc", "qdisc", "replace", "dev", HOST_END, "root", "tbf", "rate", rate, "burst", str(burst_bytes(rate)),
        "latency", "50ms")


def bytes_sent() -> int:
    """Bytes this machine has sent the node so far (the veth's own count)."""
    return int(Path(f"/sys/class/net/{HOST_END}/statistics/tx_bytes").read_text())


@contextmanager
def serving_registry(state: Path) -> Iterator[str]:
    """docker-registry on this machine's end of the link, its storage under `state`; its HOST:PORT."""
    registry.start(REGISTRY, state)
    try:
        yield REGISTRY
    finally:
        registry.stop(state)


@dataclass(frozen=True)
class Engine:
    socket: Path

    def docker(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        """The docker client against this engine (`-H` its socket); DockerError, a RuntimeError, says why."""
        return docker("-H", f"unix://{self.socket}", *args, check=check, timeout=timeout, quiet=True)


@contextmanager
def fresh_engine() -> Iterator[Engine]:
    """A dockerd in the namespace with an empty data root of its own, stopped and removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix="hello-api-node-"))
    engine, pidfile = Engine(work / "docker.sock"), work / "dockerd.pid"
    command = ["nsenter", f"--net=/var/run/netns/{NAMESPACE}", "dockerd", "--data-root", str(work / "data"),
               "--exec-root", str(work / "exec"), "--pidfile", str(pidfile), "-H", f"unix://{engine.socket}",
               "--bridge=none", "--iptables=false", "--ip-masq=false", f"--insecure-registry={REGISTRY}",
               f"--containerd-namespace={NAMESPACE}", f"--containerd-plugins-namespace={NAMESPACE}-plugins"]
    with (work / "dockerd.log").open("w") as log:
        daemon = subprocess.Popen(command, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while engine.docker("version", check=False, timeout=10).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the node's dockerd did not start: {(work / 'dockerd.log').read_text()[-800:]}")
            time.sleep(0.2)
        yield engine
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        run("umount", str(work / "exec" / "netns" / "default"), check=False)  # the engine's own mount
        shutil.rmtree(work, ignore_errors=True)
