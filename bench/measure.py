"""One function per study. Each measures for real, returns plain data, and prints what it runs."""

import datetime
import http.client
import re
import shutil
import socket
import statistics
import subprocess
import tarfile
import tempfile
import time
import uuid
import zlib
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from .docker import docker, docker_command, progress
from .images import Variant, build

CONTAINER_PORT = 5000
NOOP = "noop"  # the floor for start-up: a container that starts and does nothing


def summary(values: list[float]) -> dict:
    """min / median / p90 / max of repeated measurements, plus the raw values."""
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"min": ordered[0], "median": statistics.median(ordered), "p90": p90, "max": ordered[-1],
            "runs": len(ordered), "values": values}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ---- size -------------------------------------------------------------------------------------------

def gzip_size(tag: str) -> int:
    """Bytes of `docker save TAG | gzip`: about what a pull moves over the wire."""
    command = [*docker_command(), "save", tag]
    progress("$ " + " ".join(command) + " | gzip | wc -c")
    compressor, total = zlib.compressobj(6, zlib.DEFLATED, 31), 0
    with subprocess.Popen(command, stdout=subprocess.PIPE) as save:
        while chunk := save.stdout.read(1 << 20):
            total += len(compressor.compress(chunk))
    return total + len(compressor.flush())


KINDS = ("interpreter", "shared libraries", "stdlib bytecode", "stdlib source", "dependencies", "service", "other")
PYTHON_LIBRARY = re.compile(r"usr/(local/)?lib/python3\.\d+/")
INTERPRETER = re.compile(r"usr/(local/)?bin/python3\.\d+|.*/libpython3\.\d+\.so[.\d]*")
SHARED_LIBRARY = re.compile(r".*\.so(\.\d+)*")


def kind_of(path: str) -> str:
    """Which of KINDS a file in an image is, by where it lies: the same rules for every image."""
    if path.startswith("app/deps/"):
        return "dependencies"
    if path.startswith("app/"):
        return "service"
    if INTERPRETER.fullmatch(path):
        return "interpreter"
    if SHARED_LIBRARY.fullmatch(path):
        return "shared libraries"
    if PYTHON_LIBRARY.match(path) and "-packages/" not in path:
        if path.endswith(".pyc"):
            return "stdlib bytecode"
        if path.endswith(".py"):
            return "stdlib source"
    return "other"


@contextmanager
def exported(tag: str):
    """The image's file system as a streamed tar (`docker export` of a created, never started container)."""
    name = f"hello-api-inspect-{uuid.uuid4().hex[:8]}"
    docker("create", "--name", name, tag)
    try:
        command = [*docker_command(), "export", name]
        progress("$ " + " ".join(command) + " | tar t")
        with subprocess.Popen(command, stdout=subprocess.PIPE) as export, \
                tarfile.open(fileobj=export.stdout, mode="r|") as tar:
            yield tar
    finally:
        docker("rm", "-f", name, check=False, quiet=True)


def filesystem_facts(tag: str) -> dict:
    """File count, bytes by kind, shell and package manager presence, from the exported file system."""
    names, files, kinds = set(), 0, dict.fromkeys(KINDS, 0)
    with exported(tag) as tar:
        for member in tar:
            name = member.name.removeprefix("./")
            names.add(name)
            if member.isfile():
                files += 1
                kinds[kind_of(name)] += member.size
    present = lambda *paths: any(p in names for p in paths)  # noqa: E731
    return {
        "files": files,
        "bytes_by_kind": kinds,
        "shell": present("bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/bash"),
        "package_manager": present("usr/bin/apt", "usr/bin/apt-get", "usr/bin/dpkg"),
        "pip": any(n.endswith(("/pip", "/pip3")) and "/bin/" in n for n in names),
    }


def size_study(variant: Variant) -> dict:
    tag = variant.tag
    layers = docker("history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", tag)
    layer_rows = [line.split("\t", 1) for line in layers.stdout.splitlines() if line.strip()]
    # sys, not platform: the micro image keeps only the modules the service imports.
    python = docker("run", "--rm", "--entrypoint", "python3", tag, "-c",
                    "import sys; print('.'.join(map(str, sys.version_info[:3])))")
    return {
        "uncompressed_bytes": int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout),
        "compressed_bytes": gzip_size(tag),
        "layers": [{"bytes": int(size), "created_by": created[:160]} for size, created in reversed(layer_rows)],
        "python": python.stdout.strip(),
        **filesystem_facts(tag),
    }


# ---- build cache ------------------------------------------------------------------------------------

def step_counts(output: str) -> dict:
    """From BuildKit's plain progress: build steps ("[stage n/m] ..."), and how many came from cache."""
    titles, cached = {}, set()
    for line in output.splitlines():
        number, _, rest = line.partition(" ")
        if number.startswith("#") and re.match(r"\[[\w-]+ \d+/\d+\]|\[\d+/\d+\]", rest):
            titles.setdefault(number, rest)
        elif number.startswith("#") and rest == "CACHED":
            cached.add(number)
    reran = [title for number, title in titles.items() if number not in cached]
    return {"steps": len(titles), "cached": len(cached & set(titles)), "reran": reran,
            "dependency_step_reran": any("pip install" in title for title in reran)}


def cache_study(variant: Variant, offline: bool, dependency_file: str, code_file: str) -> dict:
    """Cold, no-change, code-edit and dependency-edit builds of a temporary copy of the context."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="hello-api-cache-") as work:
        context = Path(work) / "context"
        shutil.copytree(variant.context, context, ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", "results", ".pytest_cache", ".hypothesis", "*.egg-info"))
        copy = replace(variant, tag=f"hello-api-cache-study:{variant.name}", context=context)
        edits = {
            "cold": (None, ["--no-cache"]),
            "no_change": (None, []),
            "code_edit": (code_file, []),
            "dependency_edit": (dependency_file, []),
        }
        try:
            for label, (edited, extra) in edits.items():
                if edited:
                    with (context / edited).open("a") as file:
                        file.write(f"\n# edited by the bench {uuid.uuid4().hex}\n")
                seconds, output = build(copy, offline, extra=extra)
                results[label] = {"seconds": seconds, **step_counts(output)}
                progress(f"{variant.name} {label}: {seconds:.1f}s, "
                         f"{results[label]['cached']}/{results[label]['steps']} steps cached")
        finally:
            docker("rmi", "-f", copy.tag, check=False, quiet=True)
    cold = results["cold"]["seconds"]
    results["code_edit_share_of_cold"] = results["code_edit"]["seconds"] / cold if cold else None
    return results


# ---- containers -------------------------------------------------------------------------------------

def publish(name: str, port: int) -> list[str]:
    """`docker run` options: a named container with the service port on a free loopback port."""
    return ["--name", name, "-p", f"127.0.0.1:{port}:{CONTAINER_PORT}"]


def not_ready(tag: str, name: str) -> RuntimeError:
    logs = docker("logs", "--tail", "5", name, check=False, quiet=True)
    return RuntimeError(f"{tag} never answered /health 200 within 30 s; its last log lines: "
                        f"{(logs.stdout + logs.stderr).strip()[-500:]}")


@contextmanager
def running(tag: str, *args: str):
    """A detached container, ready (its /health answered 200), with the service port mapped to a free
    loopback port; removed afterwards."""
    name, port = f"hello-api-bench-{uuid.uuid4().hex[:8]}", free_port()
    docker("run", "-d", *publish(name, port), *args, tag, quiet=True)
    try:
        if not becomes_healthy(port):
            raise not_ready(tag, name)
        yield name, port
    finally:
        docker("rm", "-f", name, check=False, quiet=True)


def container_ip(name: str) -> str:
    """A container's address on Docker's default bridge: the route to it without the port proxy."""
    return docker("inspect", "--format", "{{.NetworkSettings.IPAddress}}", name, quiet=True).stdout.strip()


def get_status(port: int, path: str = "/health", timeout: float = 0.2, host: str = "127.0.0.1") -> int | None:
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None  # the port proxy accepts before the app listens: resets and empty replies mean "not yet"
    finally:
        connection.close()


def becomes_healthy(port: int, deadline_seconds: float = 30.0) -> bool:
    """Whether /health on a loopback port answers 200 within the deadline, polled every 5 ms."""
    return becomes_healthy_at("127.0.0.1", port, deadline_seconds)


def becomes_healthy_at(host: str, port: int, deadline_seconds: float = 30.0) -> bool:
    """Whether /health answers 200 within the deadline, polled every 5 ms with short timeouts."""
    started = time.perf_counter()
    while time.perf_counter() - started < deadline_seconds:
        if get_status(port, host=host) == 200:
            return True
        time.sleep(0.005)
    return False


def timed_start(*run_args: str, until_healthy: bool) -> float:
    """Seconds from `docker run -d RUN_ARGS` to its return, or to the first 200 from /health."""
    name, port = f"hello-api-bench-{uuid.uuid4().hex[:8]}", free_port()
    command = [*docker_command(), "run", "-d", *publish(name, port), *run_args]
    started = time.perf_counter()
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        if until_healthy and not becomes_healthy(port):
            raise not_ready(run_args[-1], name)
        return time.perf_counter() - started
    finally:
        docker("rm", "-f", name, check=False, quiet=True)


def startup_once(tag: str) -> float:
    """`docker run -d` to the first 200 from /health, in seconds."""
    return timed_start(tag, until_healthy=True)


def noop_once(image: str) -> float:
    """`docker run -d` of a container that only sleeps, with the same port mapping: the floor."""
    return timed_start("--entrypoint", "python3", image, "-c", "import time; time.sleep(120)",
                       until_healthy=False)


def startup_study(tags: dict[str, str], noop_image: str, runs: int) -> dict:
    """Interleaved rounds (every variant and the noop once per round), so drift hits all alike."""
    progress(f"start-up: {runs} rounds of: docker run -d -p 127.0.0.1:PORT:5000 TAG, then GET /health "
             f"until 200; noop: docker run -d ... --entrypoint python3 {noop_image} -c 'sleep'")
    samples: dict[str, list[float]] = {name: [] for name in [*tags, NOOP]}
    startup_once(next(iter(tags.values())))  # warm-up: first container start after a build is slower
    for round_number in range(runs):
        samples[NOOP].append(noop_once(noop_image))
        for name, tag in tags.items():
            samples[name].append(startup_once(tag))
        progress(f"start-up round {round_number + 1}/{runs}: " +
                 ", ".join(f"{n} {s[-1] * 1000:.0f}ms" for n, s in samples.items()))
    return {name: summary(values) for name, values in samples.items()}


SERVING_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) \w+ service[\w.]*: .* serving ", re.MULTILINE)


def epoch(text: str, pattern: str) -> float:
    """Seconds since the epoch of a UTC time stamp (fractions beyond microseconds dropped)."""
    whole, _, fraction = text.rstrip("Z").replace(",", ".").partition(".")
    stamp = datetime.datetime.strptime(whole, pattern).replace(tzinfo=datetime.UTC)
    return stamp.timestamp() + float(f"0.{fraction[:6] or 0}")


def import_seconds(tag: str) -> float:
    """What `python3 -X importtime` counts for importing the server and the health check, start-up's
    own imports (encodings, site) included: the sum of every module's own time."""
    result = docker("run", "--rm", "--entrypoint", "python3", tag, "-X", "importtime", "-c",
                    "import service.server", quiet=True)
    own = [int(line.split("|")[0].split(":")[1]) for line in result.stderr.splitlines()
           if line.startswith("import time:") and line.split("|")[0].split(":")[1].strip().isdigit()]
    return sum(own) / 1e6


def startup_phases_once(tag: str) -> dict | None:
    """One start split by three clocks: `docker run -d` until Docker started the process (.State.StartedAt),
    from there until the service logged that it listens (interpreter, imports, bind), and from there
    until the bench's poll got its first 200 (the port proxy and the 5 ms polling). None when the log
    has no time-stamped serving line."""
    name, port = f"hello-api-bench-{uuid.uuid4().hex[:8]}", free_port()
    started = time.time()
    docker("run", "-d", *publish(name, port), tag, quiet=True)
    try:
        if not becomes_healthy(port):
            raise not_ready(tag, name)
        answered = time.time()
        process_started = epoch(docker("inspect", "--format", "{{.State.StartedAt}}", name, quiet=True).stdout.strip(),
                                "%Y-%m-%dT%H:%M:%S")
        serving = SERVING_LINE.search(docker("logs", name, quiet=True).stderr)
    finally:
        docker("rm", "-f", name, check=False, quiet=True)
    if serving is None:
        return None
    listening = epoch(serving[1], "%Y-%m-%dT%H:%M:%S")
    return {"docker": process_started - started, "python": listening - process_started,
            "first_answer": answered - listening, "total": answered - started}


def startup_phases_study(tags: dict[str, str], runs: int) -> dict:
    """Median of each phase over RUNS starts per image, and the import time the phases' middle one holds."""
    phases: dict[str, dict] = {}
    for name, tag in tags.items():
        samples = [s for s in (startup_phases_once(tag) for _ in range(runs)) if s]
        if not samples:
            continue
        phases[name] = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
        phases[name]["imports"] = import_seconds(tag)
        phases[name]["runs"] = len(samples)
    return phases


def stop_study(tag: str, runs: int) -> dict:
    """`docker stop` wall time (Docker's default 10 s grace) and the exit code it leaves."""
    seconds, codes = [], []
    for _ in range(runs):
        with running(tag) as (name, _):
            started = time.perf_counter()
            docker("stop", name, quiet=True, timeout=60)
            seconds.append(time.perf_counter() - started)
            codes.append(int(docker("inspect", "--format", "{{.State.ExitCode}}", name, quiet=True).stdout))
    return {**summary(seconds), "exit_codes": codes}


RSS_PROBE = "print(next(l.split()[1] for l in open('/proc/1/status') if l.startswith('VmRSS')))"


def rss_kib(name: str) -> int:
    """Resident memory of the container's PID 1 (the server), read from inside with the image's Python."""
    return int(docker("exec", name, "python3", "-c", RSS_PROBE, quiet=True).stdout)


# ---- throughput -------------------------------------------------------------------------------------

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


def wrk(port: int, seconds: int, connections: int, during=None, path: str = "/hello/bench",
        host: str = "127.0.0.1") -> dict:
    """One wrk run; `during()` is called halfway through, while the load is on. `host`: loopback (the -p
    mapping) or one of the bench's own containers' addresses."""
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


def load_study(tag: str, seconds: int, connections: int, runs: int, env: dict[str, str] | None = None) -> dict:
    """RSS idle, then repeated wrk runs through the -p mapping, with RSS sampled in the middle of each."""
    if shutil.which("wrk") is None:
        raise SystemExit("the throughput study needs wrk on PATH: apt-get install wrk (or brew install wrk)")
    options = [f"-e{key}={value}" for key, value in (env or {}).items()]
    with running(tag, *options) as (name, port):
        for _ in range(20):
            get_status(port, "/hello/warm", timeout=2)
        time.sleep(2)
        idle = rss_kib(name)
        wrk(port, 1, connections)  # warm-up, discarded
        attempts, under_load = [], []
        for _ in range(runs):
            attempts.append(wrk(port, seconds, connections, during=lambda: under_load.append(rss_kib(name))))
    rps = [a["requests_per_second"] for a in attempts]
    middle = attempts[rps.index(statistics.median_low(rps))]
    return {"connections": connections, "seconds": seconds, "runs": attempts,
            "requests_per_second": summary(rps), "p50_seconds": middle["p50_seconds"],
            "p99_seconds": middle["p99_seconds"], "non_2xx": sum(a["non_2xx"] for a in attempts),
            "socket_errors": sum(a["socket_errors"] for a in attempts),
            "rss_idle_kib": idle, "rss_under_load_kib": max(under_load)}


def docker_version() -> str:
    return docker("version", "--format", "{{.Server.Version}}", quiet=True).stdout.strip()

