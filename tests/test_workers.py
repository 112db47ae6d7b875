"""APP_WORKERS: how many workers, and the supervisor that forks, stops, restarts and gives up on them.

Host-process tests run `python -m service` with APP_WORKERS=2 on loopback; the container tests (marked
docker) check `auto` against the CPU quota Docker sets and a stop of a 2-worker container.
"""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import ROOT, inspect, refuses_connections, wait_until
from raw_http import HALF_SENT_REQUEST, address, held_connections
from support import child_pids, docker, image_tag

from service import config, workers

ACCESS_LINE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \S+ GET /(health|hello/load) 200 \d+\.\d\dms")
LOAD_THREADS = 8


# ---- how many ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, parsed", [("auto", "auto"), ("1", 1), ("2", 2), ("64", 64)])
def test_app_workers_takes_auto_or_1_to_64(text, parsed):
    assert config.load({"APP_WORKERS": text}).workers == parsed


@pytest.mark.parametrize("text", ["0", "65", "two", "", " 2", "Auto", "-1", "2.0"])
def test_app_workers_refuses_anything_else_naming_what_is_allowed(text):
    with pytest.raises(config.ConfigError, match=r"APP_WORKERS=.*'auto' .* or a whole number from 1 to 64"):
        config.load({"APP_WORKERS": text})


def test_app_workers_defaults_to_1():
    assert config.load({}).workers == 1


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.mark.parametrize("files, quota", [
    ({"cpu.max": "max 100000\n"}, None),  # cgroup v2, no quota
    ({"cpu.max": "100000 100000\n"}, 1),  # --cpus 1
    ({"cpu.max": "150000 100000\n"}, 2),  # --cpus 1.5: rounded up
    ({"cpu.max": "10000 100000\n"}, 1),  # --cpus 0.1: at least 1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # cgroup v1, none
    ({"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2),  # v1, --cpus 2
    ({}, None),  # no cgroup file at all
])
def test_the_cgroup_quota_is_read_from_v2_or_v1_and_rounded_up(tmp_path, files, quota):
    for name, text in files.items():
        write(tmp_path / name, text)
    assert workers.cgroup_cpu_quota(str(tmp_path)) == quota


def test_auto_is_the_smaller_of_affinity_and_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(workers, "cgroup_cpu_quota", lambda: 2)
    assert workers.worker_count("auto") == 2
    monkeypatch.setattr(workers, "cgroup_cpu_quota", lambda: None)
    assert workers.worker_count("auto") == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(100)))
    assert workers.worker_count("auto") == 64
    assert workers.worker_count(3) == 3


# ---- processes ---------------------------------------------------------------------------------------

def children(pid: int) -> set[int]:
    return set(child_pids(pid))


def wait_for_children(pid: int, count: int, seconds: float = 10.0, avoid: set[int] = frozenset()) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = children(pid)
        if len(found) == count and not found & avoid:
            return found
        time.sleep(0.05)
    raise AssertionError(f"process {pid} has children {children(pid)}, not {count} new ones")


class Load:
    """LOAD_THREADS keep-alive clients sending GET /hello/load until told to stop, bounded in time and
    count; each counts the answers it received and the requests that failed."""

    def __init__(self, url: str, seconds: float = 15.0, per_thread: int = 20_000) -> None:
        self.url, self.seconds, self.per_thread = url, seconds, per_thread
        self.received, self.failed = 0, 0
        self.lock, self.done = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(LOAD_THREADS)]

    def client(self) -> None:
        deadline = time.monotonic() + self.seconds
        with requests.Session() as session:
            for _ in range(self.per_thread):
                if self.done.is_set() or time.monotonic() > deadline:
                    return
                try:
                    ok = session.get(f"{self.url}/hello/load", timeout=5).status_code == 200
                except requests.RequestException:
                    ok = False
                    time.sleep(0.01)  # a refused connection retries at once otherwise: no busy loop
                with self.lock:
                    self.received += ok
                    self.failed += not ok

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=20)


def test_app_workers_1_is_one_process_with_no_supervisor(start_service):
    running = start_service({"APP_WORKERS": "1"})
    requests.get(f"{running.url}/health", timeout=5)
    assert children(running.process.pid) == set()
    code, _, err = running.stop()
    assert code == 0
    assert "workers" not in err


def test_app_workers_2_forks_two_workers_that_both_serve(start_service):
    running = start_service({"APP_WORKERS": "2"})
    assert len(wait_for_children(running.process.pid, 2)) == 2
    code, _, err = running.stop()
    assert code == 0
    assert "2 workers (APP_WORKERS=2)" in err
    assert "worker 1 of 2" in err and "worker 2 of 2" in err
    assert err.count("Stopped cleanly") == 2


def test_sigterm_under_load_with_2_workers_loses_no_answered_request_and_exits_0(start_service):
    running = start_service({"APP_WORKERS": "2", "APP_SHUTDOWN_GRACE": "2"})
    wait_for_children(running.process.pid, 2)
    with Load(running.url) as load:
        wait_until(lambda: load.received > 100, "answers under load")
        code, out, err = running.stop(timeout=15)
    answered = [line for line in out.splitlines() if " GET /hello/load " in line]
    assert code == 0, err
    assert "killing them" not in err  # every worker ended within the grace plus the margin, unkilled
    assert len(answered) == load.received  # every answer the workers wrote reached its client
    assert [line for line in out.splitlines() if not ACCESS_LINE.fullmatch(line)] == []  # none interleaved
    assert err.count("Stopped cleanly") == 2  # each worker drained what it had received within the grace
    assert "Traceback" not in err


def test_a_worker_killed_under_load_is_restarted_and_the_port_keeps_answering(start_service):
    running = start_service({"APP_WORKERS": "2"})
    first = wait_for_children(running.process.pid, 2)
    victim = min(first)
    with Load(running.url) as load:
        wait_until(lambda: load.received > 50, "answers under load")
        before = load.received
        os.kill(victim, signal.SIGKILL)
        replaced = wait_for_children(running.process.pid, 2, avoid={victim})
        wait_until(lambda: load.received > before + 50, "answers after the kill")
        failed_at_kill = load.failed
        after = load.received
    assert victim not in replaced and len(replaced) == 2
    assert after > before  # the port kept answering
    # Only the connections the dead worker held fail: at most one per client.
    assert failed_at_kill <= LOAD_THREADS, (failed_at_kill, before, after)
    print(f"kill -9 of a worker: {failed_at_kill} failed, {after - before} answered after it")
    code, _, err = running.stop()
    assert code == 0, err
    assert re.search(rf"worker \d \(pid {victim}\) died \(killed by SIGKILL\) after [\d.]+s; starting it again", err)


def test_a_worker_that_cannot_start_stops_the_service_with_exit_1_and_no_restart(start_service):
    running = start_service({"APP_WORKERS": "2", "TEST_SERVICE_HOOKS": "failing_worker"}, module="hooked_service",
                            wait=False)
    code, _, err = running.finish(timeout=15)
    assert code == 1
    stopping = [line for line in err.splitlines() if "stopping the service" in line]
    assert len(stopping) == 1, err
    assert re.search(r"worker \d \(pid \d+\) ended before it served \(exit status 1\)", stopping[0])
    assert err.count("RuntimeError: this worker cannot build its app") <= 2  # each tried once: no restart loop
    assert "starting it again" not in err


def test_workers_whose_supervisor_is_killed_stop_instead_of_serving_on(start_service):
    running = start_service({"APP_WORKERS": "2"})
    orphans = wait_for_children(running.process.pid, 2)
    running.process.kill()
    running.process.wait(timeout=5)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() and "Z" not in state(pid) for pid in orphans) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{pid}").exists() and "Z" not in state(pid) for pid in orphans)


def test_workers_whose_supervisor_is_killed_while_they_start_stop_once_they_serve(start_service, tmp_path):
    running = start_service({"APP_WORKERS": "2", "TEST_SERVICE_HOOKS": "slow_start_worker", "START_DIR": str(tmp_path)},
                            module="hooked_service", wait=False)
    deadline = time.monotonic() + 10
    while len(list(tmp_path.glob("starting-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    orphans = {int(path.name.split("-")[1]) for path in tmp_path.glob("starting-*")}
    assert len(orphans) == 2
    running.process.kill()
    running.process.wait(timeout=5)
    (tmp_path / "go").touch()  # the workers build their app and serve only now, with the supervisor gone
    try:
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in orphans) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in orphans)
    finally:
        for pid in orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "Z" not in state(pid)


def state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_a_taken_port_with_2_workers_exits_1_with_the_one_line_before_forking(start_service):
    first = start_service()
    second = start_service({"APP_WORKERS": "2", "APP_PORT": str(first.port)}, wait=False)
    code, _, err = second.finish()
    assert code == 1
    assert err.count(f"cannot listen on 127.0.0.1 port {first.port}") == 1
    assert "worker" not in err and "Traceback" not in err


def test_a_second_signal_reaches_every_worker_and_skips_the_grace(start_service, tmp_path):
    started = tmp_path / "started"
    running = start_service({"APP_WORKERS": "2", "APP_SHUTDOWN_GRACE": "20", "TEST_SERVICE_HOOKS": "slow",
                             "SLOW_SECONDS": "30", "STARTED_FILE": str(started)}, module="hooked_service")
    threading.Thread(target=get_quietly, args=(f"{running.url}/slow",), daemon=True).start()
    wait_until(started.exists, "the slow request in the app")
    running.process.send_signal(signal.SIGTERM)
    wait_until(lambda: refuses_connections(running.port), "the drain begun in both workers")
    code, _, err = running.stop(signal.SIGTERM, timeout=15)  # within 15 s: not the 20 s grace
    assert code == 3, err  # the worker that cut the request short exited 3; the other drained cleanly
    assert "request cut short by a second stop signal, unanswered: 127.0.0.1 GET /slow" in err
    assert err.count("request(s) cut short") == 1, err
    assert "stopped with exit status" not in err


def get_quietly(url: str) -> None:
    with contextlib.suppress(requests.RequestException):  # cut short on purpose
        requests.get(url, timeout=60)


def test_the_healthcheck_passes_against_2_workers(start_service):
    running = start_service({"APP_WORKERS": "2"})
    result = subprocess.run([sys.executable, "-m", "service.healthcheck"], cwd=ROOT, capture_output=True,
                            text=True, timeout=10, env={"PYTHONPATH": str(ROOT), "APP_PORT": str(running.port)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_half_sent_requests_over_every_workers_limit_do_not_lock_out_a_new_client(start_service):
    """The limit is per worker (2 x 10 here): 60 silent half-sent requests fill both, and a fresh client
    is still admitted, by whichever worker accepts it closing the one waiting longest."""
    running = start_service({"APP_WORKERS": "2", "APP_CONNECTION_LIMIT": "10"})
    wait_for_children(running.process.pid, 2)
    with held_connections(address(running), 60, HALF_SENT_REQUEST):
        for _ in range(5):  # well within the 5 s receive timeout that would free slots anyway
            assert requests.get(f"{running.url}/health", timeout=2).status_code == 200


# ---- the listening socket: one shared, or one per worker (APP_REUSE_PORT) ------------------------------

def listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on `port` (state 0A in /proc/net/tcp and tcp6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def sockets_held(pid: int, inodes: set[str]) -> set[str]:
    """Which of `inodes` the process `pid` has open, from its /proc/PID/fd links (socket:[INODE])."""
    held = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # a descriptor closed while we look
            target = os.readlink(fd)
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held.add(target[8:-1])
    return held


def reuse_port_bind(port: int) -> OSError | None:
    """Try to bind a second SO_REUSEPORT listener on the port: None if the kernel lets it share the port."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as refused:
            return refused
    return None


def test_two_workers_share_the_one_listening_socket_the_supervisor_bound(start_service):
    running = start_service({"APP_WORKERS": "2"})
    pids = wait_for_children(running.process.pid, 2)
    [inode] = listening_inodes(running.port)
    assert sockets_held(running.process.pid, {inode}) == {inode}
    assert all(sockets_held(pid, {inode}) == {inode} for pid in pids)
    assert reuse_port_bind(running.port) is not None  # nothing else may take a share of the port


def test_with_app_reuse_port_each_worker_listens_on_a_socket_of_its_own(start_service):
    running = start_service({"APP_WORKERS": "2", "APP_REUSE_PORT": "true"})
    pids = wait_for_children(running.process.pid, 2)
    wait_until(lambda: len(listening_inodes(running.port)) == 2, "a listening socket per worker")
    inodes = listening_inodes(running.port)
    assert sockets_held(running.process.pid, inodes) == set()  # the supervisor binds nothing
    held = [sockets_held(pid, inodes) for pid in pids]
    assert all(len(own) == 1 for own in held) and held[0] != held[1]
    assert reuse_port_bind(running.port) is None  # the README's warning: another process may share the port
    assert requests.get(f"{running.url}/health", timeout=5).status_code == 200


def test_app_reuse_port_with_one_worker_warns_and_binds_the_port_as_usual(start_service):
    running = start_service({"APP_WORKERS": "1", "APP_REUSE_PORT": "on"})
    assert len(listening_inodes(running.port)) == 1
    assert reuse_port_bind(running.port) is not None  # no SO_REUSEPORT: a second copy cannot share the port
    code, _, err = running.stop()
    assert code == 0
    assert "APP_REUSE_PORT is set but has no effect with one worker (APP_WORKERS=1)" in err


# ---- containers --------------------------------------------------------------------------------------

def auto_in(image_tag: str, *options: str) -> int:
    python = docker("image", "inspect", "--format", "{{index .Config.Entrypoint 0}}", image_tag, quiet=True)
    result = docker("run", "--rm", *options, "--entrypoint", python.stdout.strip(), image_tag, "-c",
                    "from service.workers import worker_count; print(worker_count('auto'))", quiet=True)
    return int(result.stdout)


@pytest.mark.docker
def test_auto_in_a_container_follows_docker_run_cpus(image):
    tag = image_tag(image)
    assert auto_in(tag, "--cpus", "1") == 1
    assert auto_in(tag, "--cpuset-cpus", "0") == 1
    assert auto_in(tag) == min(64, len(os.sched_getaffinity(0)))


@pytest.mark.docker
@pytest.mark.parametrize("reuse_port", ["false", "true"], ids=["shared-socket", "APP_REUSE_PORT"])
def test_a_2_worker_container_is_healthy_and_docker_stop_exits_0_well_before_the_kill(image, run_container,
                                                                                      reuse_port):
    name, url = run_container(image, env={"APP_WORKERS": "2", "APP_REUSE_PORT": reuse_port})
    assert requests.get(f"{url}/hello/two", timeout=5).status_code == 200
    deadline = time.monotonic() + 30
    while inspect(name, "{{.State.Health.Status}}") != "healthy" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert inspect(name, "{{.State.Health.Status}}") == "healthy"
    started = time.monotonic()
    docker("stop", name, quiet=True)
    assert time.monotonic() - started < 5  # Docker kills at 10 s
    assert inspect(name, "{{.State.ExitCode}}") == "0"
    logs = docker("logs", name, quiet=True).stderr
    assert logs.count("Stopped cleanly") == 2
