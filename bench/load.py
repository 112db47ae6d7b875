"""Load as every study applies it: wrk (closed loop) and its parsing, and the median and range of repeated
runs. The open-loop generator is bench/openloop.py."""

import re
import shutil
import statistics
import subprocess
import time
from collections.abc import Callable

from images.docker import progress

CONNECTIONS = 16


def summary(values: list[float]) -> dict:
    """min / median / p90 / max of repeated measurements, plus the raw values."""
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"min": ordered[0], "median": statistics.median(ordered), "p90": p90, "max": ordered[-1],
            "runs": len(ordered), "values": values}


def complete_summary(values: list[float | None]) -> dict | None:
    """summary(), or None when some run has no figure (a run that answered nothing has no CPU per request)."""
    return None if None in values else summary(values)


def require_wrk(study: str) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit(f"the {study} study needs wrk on PATH: apt-get install wrk (or brew install wrk)")


def parse_wrk(output: str) -> dict:
    def seconds(value: str) -> float:
        number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
        return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]

    result = {"requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1]),
              "requests": int(re.search(r"(\d+) requests in", output)[1]),
              "p50_seconds": seconds(re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)[1]),
              "p99_seconds": seconds(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)[1]),
              "non_2xx": 0, "socket_errors": 0}
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        result["non_2xx"] = int(match[1])
    if match := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output):
        result["socket_errors"] = sum(int(n) for n in match.groups())
    return result


def wrk(port: int, seconds: int, connections: int = CONNECTIONS, during: Callable[[], None] | None = None,
        path: str = "/hello/bench", host: str = "127.0.0.1") -> dict:
    """One wrk run; `during()` is called halfway through, while the load is on. `host`: loopback (the -p
    mapping) or a container's own address."""
    command = ["wrk", "--latency", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
               f"http://{host}:{port}{path}"]
    progress("$ " + " ".join(command))
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as load:
        if during:
            time.sleep(seconds / 2)
            during()
        output, _ = load.communicate(timeout=seconds + 60)
    if load.returncode != 0:
        raise RuntimeError(f"wrk failed ({load.returncode}): {output[-500:]}")
    return parse_wrk(output)


def with_cpu(load: Callable[[], dict], cpu_ns: Callable[[], float]) -> dict:
    """load() (one wrk run) with `cpu_us_per_request`: the server's CPU time over the run (cpu_ns(), its
    total so far, read before and after) per answered (2xx) request; None when none was answered."""
    before = cpu_ns()
    run = load()
    used = cpu_ns() - before
    answered = run["requests"] - run["non_2xx"]
    run["cpu_us_per_request"] = used / 1000 / answered if answered > 0 else None
    return run


def median_run(attempts: list[dict]) -> dict:
    """The run with the median throughput (the lower of two middles), whose percentiles a report quotes."""
    rps = [a["requests_per_second"] for a in attempts]
    return attempts[rps.index(statistics.median_low(rps))]


def summarise_wrk_runs(attempts: list[dict]) -> dict:
    """Repeated wrk runs: throughput's summary, the server's CPU per request (None unless every run has
    it), the median run's p50 and p99, errors summed, runs kept."""
    middle = median_run(attempts)
    return {"requests_per_second": summary([a["requests_per_second"] for a in attempts]),
            "cpu_us_per_request": complete_summary([a.get("cpu_us_per_request") for a in attempts]),
            "p50_seconds": middle["p50_seconds"], "p99_seconds": middle["p99_seconds"],
            "non_2xx": sum(a["non_2xx"] for a in attempts),
            "socket_errors": sum(a["socket_errors"] for a in attempts), "runs": attempts}
