"""The bench against an engine whose processes and loopback it cannot see, as Docker Desktop's VM and a remote
DOCKER_HOST look to it: memory from the engine's stats, ports published where the bench reaches the engine.

`bench compare` runs in a network namespace and a PID namespace of its own and reaches this machine's engine
over TCP (DOCKER_HOST=tcp://...), through a relay to the engine's socket on a veth pair: its /proc holds none
of the engine's processes (a container's pid names another process there, or none), and its loopback none of
the ports the engine publishes."""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, require_image, unavailable

from bench import containers
from bench.image_measures import Memory
from bench.load import with_cpu, wrk
from bench.processes import cpu_seconds
from images import bases
from images.docker import build, docker, docker_command, engine_endpoint
from images.variants import image_tag

ELSEWHERE = 'EXPOSE 9000\nCMD ["python3", "-m", "http.server", "9000"]\n'


def relay(listener: socket.socket, engine_socket: str) -> None:
    """Every connection to `listener`, joined to the engine's unix socket, bytes both ways."""
    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def join(client: socket.socket) -> None:
        with client, socket.socket(socket.AF_UNIX) as engine:
            engine.connect(engine_socket)
            back = threading.Thread(target=pump, args=(engine, client), daemon=True)
            back.start()
            pump(client, engine)
            back.join()

    while True:
        try:
            client, _ = listener.accept()
        except OSError:
            return  # the listener was closed: the test is over
        threading.Thread(target=join, args=(client,), daemon=True).start()


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def elsewhere(engine) -> Iterator[dict]:
    """A network namespace on a veth pair, with this machine's engine reachable at the pair's far end over
    TCP: {"namespace", "docker_host", "address"}. Removed afterwards."""
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("unshare"):
        unavailable("the remote-engine test makes namespaces and a veth pair: run it as root with ip and unshare")
    endpoint = urllib.parse.urlsplit(engine_endpoint())
    if endpoint.scheme != "unix":
        unavailable(f"the remote-engine test relays to a local engine's unix socket, not {endpoint.geturl()}")
    token = uuid.uuid4().hex[:6]
    namespace, outside, inside = f"hello-api-{token}", f"ha{token}", f"hb{token}"
    subnet = f"10.213.{int(token[:2], 16)}"
    ip("netns", "add", namespace)
    try:
        ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        ip("link", "set", inside, "netns", namespace)
        ip("addr", "add", f"{subnet}.1/30", "dev", outside)
        ip("link", "set", outside, "up")
        for command in (["addr", "add", f"{subnet}.2/30", "dev", inside], ["link", "set", inside, "up"],
                        ["link", "set", "lo", "up"]):
            ip("netns", "exec", namespace, "ip", *command)
        with socket.create_server((f"{subnet}.1", 0)) as listener:
            threading.Thread(target=relay, args=(listener, endpoint.path), daemon=True).start()
            yield {"namespace": namespace, "address": f"{subnet}.1",
                   "docker_host": f"tcp://{subnet}.1:{listener.getsockname()[1]}"}
    finally:
        subprocess.run(["ip", "link", "del", outside], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)


def run_elsewhere(place: dict, *command: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """`command` in the namespace's network and a PID namespace of its own, with the engine at DOCKER_HOST."""
    environment = {**{k: v for k, v in os.environ.items() if k != containers.ENGINE_ADDRESS_VARIABLE},
                   "DOCKER_HOST": place["docker_host"]}
    return subprocess.run(["ip", "netns", "exec", place["namespace"], "unshare", "--pid", "--fork", "--mount-proc",
                           *command], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def compared_elsewhere(elsewhere, tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    micro = image_tag(require_image("micro"))
    context = tmp_path_factory.mktemp("elsewhere")
    (context / "Dockerfile").write_text(f"FROM {bases.SLIM_BASE}\n{ELSEWHERE}")
    listening_elsewhere = f"hello-api-remote-{uuid.uuid4().hex[:8]}:elsewhere"
    build(context, "-q", "-t", listening_elsewhere)
    output = tmp_path_factory.mktemp("compare")
    try:
        result = run_elsewhere(elsewhere, sys.executable, "-m", "bench", "compare", f"micro={micro}",
                               f"elsewhere={listening_elsewhere}", "--url", "/hello/you", "--ready-seconds", "5",
                               "--offline", "--quick", "--runs", "3", "--output", str(output))
    finally:
        docker("rmi", "-f", listening_elsewhere, check=False)
    assert (output / "results.json").exists(), result.stderr[-3000:]
    return result, json.loads((output / "results.json").read_text()), output


@pytest.mark.docker
def test_the_relayed_engine_hides_its_processes_and_published_ports_from_the_namespace(elsewhere):
    """The setting is what it claims: the engine answers, but pid 1 there is not this machine's, and this
    machine's loopback is not there."""
    seen = run_elsewhere(elsewhere, sys.executable, "-c",
                         "import os, socket; print(os.getpid(), len(os.listdir('/proc')));"
                         f"socket.create_connection(('{elsewhere['address']}', 1), timeout=2)", timeout=60)
    assert "ConnectionRefusedError" in seen.stderr, seen.stderr[-500:]  # routed to this machine, refused
    pid, _ = map(int, seen.stdout.split())
    assert pid == 1
    version = run_elsewhere(elsewhere, *docker_command(), "version", "--format", "{{.Server.Version}}", timeout=60)
    assert version.returncode == 0 and version.stdout.strip(), version.stderr


@pytest.mark.docker
def test_compare_against_an_engine_elsewhere_measures_memory_from_its_stats_and_reaches_its_ports(
        compared_elsewhere, elsewhere):
    result, found, output = compared_elsewhere
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 3, result.stderr[-3000:]  # written; `elsewhere` not measured, and says why
    assert found["machine"]["engine_address"] == elsewhere["address"]
    micro = found["variants"]["micro"]
    assert micro["problems"] == []
    assert micro["load"]["memory_idle_kib"] > 1000 and micro["load"]["memory_under_load_kib"] > 1000
    assert micro["load"]["requests_per_second"]["median"] > 0 and micro["load"]["non_2xx"] == 0
    assert micro["stop"]["exit_codes"] == [0] and micro["startup"]["median"] > 0
    assert 1 < micro["load"]["cpu_us_per_request"]["median"] < 100_000  # µs, from the engine's stats
    assert micro["size"]["files"] > 50
    # The first process's RSS is this machine's to read only: here it is missing, and says why.
    assert micro["load"]["rss_idle_kib"] is None and "not on this machine" in micro["load"]["rss_problem"]
    assert any("declares EXPOSE port(s) 9000, not 5000: pass --port 9000" in p
               for p in found["variants"]["elsewhere"]["problems"])
    report = (output / "report.md").read_text()
    assert f"at\n{elsewhere['address']}:PORT" in report and "- rss: " in report


@pytest.mark.docker
def test_memory_is_the_containers_anonymous_memory_which_proc_confirms_where_the_engine_is_local(engine):
    tag = image_tag(require_image("micro"))
    with containers.running(tag) as ready:
        engine_kib = containers.memory_kib(ready.name)
        pid = containers.local_pid(ready.name)
        assert pid is not None
        anonymous = [int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                     if line.startswith("RssAnon:")]
        sample = Memory(ready.name).read()
    assert sample["rss"] > sample["memory"] > 0  # RSS counts the mapped libraries too
    assert abs(engine_kib - anonymous[0]) <= 0.15 * anonymous[0], (engine_kib, anonymous)


@pytest.mark.docker
def test_cpu_is_the_containers_cgroup_usage_which_proc_confirms_where_the_engine_is_local(engine):
    """One process (APP_WORKERS=1): the engine's figure for the container is that process's CPU time."""
    tag = image_tag(require_image("micro"))
    with containers.running(tag, "-eAPP_WORKERS=1") as ready:
        pid = containers.local_pid(ready.name)
        assert pid is not None
        engine_before, proc_before = containers.cpu_ns(ready.name), cpu_seconds(pid)
        run = with_cpu(lambda: wrk(ready.port, 3, 16, host=ready.host), lambda: containers.cpu_ns(ready.name))
        engine_used, proc_used = containers.cpu_ns(ready.name) - engine_before, (cpu_seconds(pid) - proc_before) * 1e9
    assert proc_used > 0.3e9  # the load made it work
    assert abs(engine_used - proc_used) <= 0.15 * proc_used, (engine_used, proc_used)
    answered = run["requests"] - run["non_2xx"]
    assert run["cpu_us_per_request"] == pytest.approx(engine_used / 1000 / answered, rel=0.15)


def test_a_pid_whose_cgroup_does_not_name_the_container_is_not_read_as_its_process(monkeypatch):
    """An engine in another PID namespace reports pids that name other processes here (pid 1 always exists)."""
    monkeypatch.setattr(containers, "docker", lambda *args, **kwargs: subprocess.CompletedProcess(
        args, 0, f"1 {'ab' * 32}\n", ""))
    assert containers.local_pid("some-container") is None
    with pytest.raises(RuntimeError, match="not on this machine"):
        containers.rss_kib("some-container")


@pytest.mark.parametrize(("endpoint", "address", "remote"), [
    ("unix:///var/run/docker.sock", "127.0.0.1", False),
    ("npipe:////./pipe/docker_engine", "127.0.0.1", False),
    ("tcp://10.1.2.3:2376", "10.1.2.3", True),
    ("ssh://me@build-box", "build-box", True),
])
def test_published_ports_are_reached_at_the_engines_host(monkeypatch, endpoint, address, remote):
    monkeypatch.delenv(containers.ENGINE_ADDRESS_VARIABLE, raising=False)
    monkeypatch.setattr(containers, "engine_endpoint", lambda: endpoint)
    containers.engine_address.cache_clear()
    try:
        assert containers.engine_address() == address
        assert containers.engine_is_remote() is remote
        assert containers.publish("x", 20001)[-1] == f"{'0.0.0.0' if remote else '127.0.0.1'}:20001:5000"
        monkeypatch.setenv(containers.ENGINE_ADDRESS_VARIABLE, "192.0.2.7")
        containers.engine_address.cache_clear()
        assert containers.engine_address() == "192.0.2.7" and containers.engine_is_remote()
    finally:
        containers.engine_address.cache_clear()
