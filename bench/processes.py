"""Host processes as the studies use them: the service started as `python -m service` on loopback, stopped
with SIGTERM, its worker processes and open descriptors read from /proc (no psutil), and this process's own
open-file limit raised for clients that hold many sockets."""

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

from images.docker import ROOT


def start_service(port: int, log: Path, settings: dict[str, str], root: Path = ROOT) -> subprocess.Popen:
    """`python -m service` from the checkout at `root` on 127.0.0.1:`port` with `settings` (APP_* variables;
    the caller's own APP_* are left out), its stderr (the log) written to `log`."""
    environ = {**{k: v for k, v in os.environ.items() if not k.startswith("APP_")},
               "APP_HOST": "127.0.0.1", "APP_PORT": str(port), "PYTHONPATH": str(root), **settings}
    with log.open("w") as stderr:
        return subprocess.Popen([sys.executable, "-m", "service"], cwd=root, env=environ,
                                stdout=subprocess.DEVNULL, stderr=stderr)


def stop_process(process: subprocess.Popen) -> int:
    """SIGTERM, then SIGKILL after 15 s; the exit code."""
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout=5)


def child_pids(parent: int) -> list[int]:
    """Live child processes of `parent` (a supervisor's workers), from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent and fields[0] != "Z":
                found.append(int(entry.name))
    return sorted(found)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used so far, all its threads together, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_descriptors(pids: list[int]) -> int:
    """Open file descriptors of these processes together, from /proc/<pid>/fd (a process gone counts 0)."""
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            continue
    return total


def allow_open_files(wanted: int) -> int:
    """Raise this process's soft open-file limit to `wanted` (at most the hard limit); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft
