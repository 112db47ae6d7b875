"""`python -m bench workers`: APP_WORKERS=1 against `auto`, and waitress against gunicorn and granian.

Four parts, each measured for real in one run and written to workers.json and workers.md:
- the listening socket: one shared socket bound before fork (what the service does) against one
  SO_REUSEPORT socket per worker, as host processes: throughput, a worker killed under load, and what a
  second instance on the same port does;
- throughput and p99 of slim and distroless with APP_WORKERS=1 and auto, through the `-p` mapping and
  straight to the container's address (its Docker bridge IP), so the port proxy's cost shows apart;
- the same app under gunicorn (gthread, same processes x threads) and granian (WSGI), from an image
  built on the same base for the bench only (bench/reference/);
- idle memory per process and in total, and `docker stop` of a 2-worker container, idle and under load.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from images.docker import docker, progress
from images.variants import VARIANTS

from .. import results as run_results
from ..containers import CONTAINER_PORT, answers_while, container_ip, cpu_ns, free_port, get_status, running, stop
from ..control import plain_waitress_code
from ..load import require_wrk, summarise_wrk_runs, summary, with_cpu, wrk
from ..noise import Quietness, describe
from ..processes import child_pids, start_service, stop_process
from ..reference_servers import REFERENCE
from ..render import cpu_per_request, mib, table, targets_table
from ..stopping import CONNECTIONS as STOP_CONNECTIONS
from ..stopping import stop_under_load

THREADS = 8  # APP_THREADS's default; gunicorn gets the same threads per process
IMAGES = ("slim", "distroless")  # the study's two, named here so that images added elsewhere stay out of it
GRANIAN_SHARE = 0.8  # towards the frontier: Rust I/O with Python only for the app


@dataclass(frozen=True)
class Plan:
    quick: bool
    seconds: int  # per wrk run
    runs: int  # wrk runs per row and route, alternating routes
    stop_runs: int
    connections: int = 16


PLANS = {"quick": Plan(True, 3, 2, 2), "full": Plan(False, 10, 3, 5)}


# ---- the machine -------------------------------------------------------------------------------------

AUTO_PROBE = ("from service.workers import cgroup_cpu_quota, cpus_allowed, worker_count; "
              "print(worker_count('auto'), cpus_allowed(), cgroup_cpu_quota())")


def cpu_facts(tag: str) -> dict:
    """CPUs of the host, and what `auto` resolves to inside a container of `tag` (no --cpus given)."""
    inside = docker("run", "--rm", "--entrypoint", "python3", tag, "-c", AUTO_PROBE, quiet=True).stdout.split()
    return {"host_cpus": os.cpu_count(), "host_affinity": len(os.sched_getaffinity(0)),
            "container_auto_workers": int(inside[0]), "container_cpus_allowed": int(inside[1]),
            "container_cpu_quota": None if inside[2] == "None" else int(inside[2])}


# ---- shared socket against SO_REUSEPORT, as host processes ---------------------------------------------

def start_host_service(mode: str, port: int, log: Path) -> subprocess.Popen:
    return start_service(port, log, {"APP_WORKERS": "2",
                                     "APP_REUSE_PORT": "true" if mode == "reuseport" else "false"})


def wait_healthy(port: int, process: subprocess.Popen, seconds: float = 15) -> bool:
    return answers_while(lambda: process.poll() is None, port, seconds=seconds)


def second_instance_starts(mode: str, port: int, log: Path) -> bool:
    """Whether a second 2-worker service on a port the first already serves comes up healthy instead of
    failing (with SO_REUSEPORT, the kernel lets it share the port and splits connections between them)."""
    second = start_host_service(mode, port, log)
    deadline = time.monotonic() + 5
    while second.poll() is None and time.monotonic() < deadline:
        if len(child_pids(second.pid)) == 2:
            time.sleep(0.5)
            break
        time.sleep(0.05)
    started = second.poll() is None
    stop_process(second) if started else None
    return started


def socket_mode_study(plan: Plan) -> dict:
    """Alternating runs of the two modes on loopback, then in each a worker killed halfway through a run."""
    progress("listening socket: shared (bound before fork) against SO_REUSEPORT per worker, 2 workers, "
             "host processes: python -m service with APP_REUSE_PORT=false|true")
    modes = ("shared", "reuseport")
    runs: dict[str, list[dict]] = {mode: [] for mode in modes}
    outcome: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="hello-api-sockets-") as work:
        for _ in range(plan.runs):
            for mode in modes:
                port = free_port()
                process = start_host_service(mode, port, Path(work) / f"{mode}.log")
                try:
                    if not wait_healthy(port, process):
                        raise RuntimeError(f"socket mode {mode}: the service never answered: "
                                           f"{(Path(work) / f'{mode}.log').read_text()[-500:]}")
                    wrk(port, 1, plan.connections)  # warm-up
                    runs[mode].append(wrk(port, plan.seconds, plan.connections))
                finally:
                    stop_process(process)
        for mode in modes:
            port = free_port()
            process = start_host_service(mode, port, Path(work) / f"{mode}.log")
            try:
                if not wait_healthy(port, process):
                    raise RuntimeError(f"socket mode {mode}: the service never answered")
                victim = child_pids(process.pid)[0]
                killed = wrk(port, max(4, plan.seconds), plan.connections,
                             during=lambda victim=victim: os.kill(victim, signal.SIGKILL))
                restarted = len(child_pids(process.pid)) == 2 and victim not in child_pids(process.pid)
                hijack = second_instance_starts(mode, port, Path(work) / f"{mode}-second.log")
            finally:
                exit_code = stop_process(process)
            rps = [r["requests_per_second"] for r in runs[mode]]
            outcome[mode] = {"requests_per_second": summary(rps),
                             "p99_seconds": statistics.median(r["p99_seconds"] for r in runs[mode]),
                             "socket_errors": sum(r["socket_errors"] for r in runs[mode]),
                             "kill_run": killed, "kill_run_failures": killed["socket_errors"] + killed["non_2xx"],
                             "worker_restarted": restarted, "second_instance_on_the_port_started": hijack,
                             "exit_code": exit_code}
            progress(f"{mode}: {outcome[mode]['requests_per_second']['median']:,.0f} req/s, "
                     f"{outcome[mode]['kill_run_failures']} failed when a worker was killed, "
                     f"second instance started: {hijack}")
    return {"workers": 2, "seconds": plan.seconds, "connections": plan.connections, "runs": plan.runs,
            "modes": outcome}


# ---- containers: throughput through -p and direct -----------------------------------------------------

PROCESS_PROBE = """
import json, os
rows = []
for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
        command = open(f'/proc/{pid}/cmdline', 'rb').read()
        if int(pid) == os.getpid() or b'healthcheck' in command:
            continue
        status = dict(line.split(':', 1) for line in open(f'/proc/{pid}/status'))
        pss = [int(line.split()[1]) for line in open(f'/proc/{pid}/smaps_rollup') if line.startswith('Pss:')]
        rows.append({'pid': int(pid), 'ppid': int(status['PPid']), 'rss_kib': int(status['VmRSS'].split()[0]),
                     'pss_kib': pss[0] if pss else None})
    except (OSError, KeyError, ValueError):
        continue
print(json.dumps(rows))
"""


def processes(name: str) -> list[dict]:
    """The container's processes (the docker exec probe itself and health checks left out), with RSS and
    PSS: RSS counts pages that forked workers share once per worker; PSS divides them among them."""
    return json.loads(docker("exec", name, "python3", "-c", PROCESS_PROBE, quiet=True).stdout)


def route_runs(name: str, port: int, plan: Plan) -> dict:
    """wrk through the -p mapping and straight to the container's address, alternating, same container; the
    container's CPU time per answered request over each run."""
    ip = container_ip(name)
    for _ in range(20):
        get_status(port, "/hello/warm", timeout=2)
    time.sleep(2)
    idle = processes(name)
    wrk(port, 1, plan.connections)
    wrk(CONTAINER_PORT, 1, plan.connections, host=ip)
    routes: dict[str, list[dict]] = {"published": [], "direct": []}
    for _ in range(plan.runs):
        routes["published"].append(with_cpu(lambda: wrk(port, plan.seconds, plan.connections), lambda: cpu_ns(name)))
        routes["direct"].append(with_cpu(lambda: wrk(CONTAINER_PORT, plan.seconds, plan.connections, host=ip),
                                         lambda: cpu_ns(name)))
    return {"routes": {route: summarise_wrk_runs(attempts) for route, attempts in routes.items()},
            "idle_processes": idle, "idle_rss_total_kib": sum(p["rss_kib"] for p in idle),
            "idle_pss_total_kib": sum(p["pss_kib"] or 0 for p in idle), "process_count": len(idle)}


def row(tag: str, label: str, processes_count: int, plan: Plan, *options: str, command: tuple[str, ...] = ()) -> dict:
    progress(f"throughput: {label}")
    with running(tag, *options, command=command) as (name, port):
        measured = route_runs(name, port, plan)
    return {"label": label, "tag": tag, "options": [*options, *command], "processes": processes_count,
            "threads": THREADS, **measured}


def throughput_rows(plan: Plan, auto: int) -> dict:
    rows = {}
    for image in IMAGES:
        tag = VARIANTS[image].tag
        rows[f"{image} APP_WORKERS=1"] = row(tag, f"waitress, {image}, APP_WORKERS=1", 1, plan, "-eAPP_WORKERS=1")
        rows[f"{image} APP_WORKERS=auto"] = row(tag, f"waitress, {image}, APP_WORKERS=auto ({auto})", auto, plan,
                                                "-eAPP_WORKERS=auto")
    rows[f"plain waitress {THREADS}"] = row(  # one process: waitress has no workers of its own
        VARIANTS["slim"].tag, f"plain waitress, slim, 1 process x {THREADS} threads, no access log", 1, plan,
        "--entrypoint", "python3", command=("-c", plain_waitress_code(f"0.0.0.0:{CONTAINER_PORT}", THREADS)))
    for count in sorted({1, auto}):
        rows[f"gunicorn {count}x{THREADS}"] = row(
            REFERENCE.tag, f"gunicorn gthread, {count} x {THREADS} threads", count, plan,
            "-eSERVER=gunicorn", f"-eWORKERS={count}", f"-eTHREADS={THREADS}")
        rows[f"granian {count}"] = row(
            REFERENCE.tag, f"granian WSGI, {count} worker(s) x {THREADS} blocking threads", count, plan,
            "-eSERVER=granian", f"-eWORKERS={count}", f"-eTHREADS={THREADS}")
    return rows


# ---- stopping 2 workers --------------------------------------------------------------------------------

def stop_once(tag: str, count: int) -> tuple[float, int]:
    """`docker stop` of an idle container with APP_WORKERS=count: (seconds, exit code)."""
    with running(tag, f"-eAPP_WORKERS={count}") as (name, _):
        return stop(name)


def idle_stops(tag: str, runs: int) -> dict:
    """2 workers and, interleaved in the same rounds, 1 worker: the supervisor's cost apart from drift."""
    samples: dict[int, list[tuple[float, int]]] = {2: [], 1: []}
    for _ in range(runs):
        for count in samples:
            samples[count].append(stop_once(tag, count))
    two, one = ({**summary([s for s, _ in samples[c]]), "exit_codes": [code for _, code in samples[c]]}
                for c in (2, 1))
    return {"idle": two, "idle_one_worker": one}


def stop_rows(plan: Plan) -> dict:
    rows = {}
    for image in IMAGES:
        tag = VARIANTS[image].tag
        progress(f"stop with 2 workers (and 1, interleaved): {tag}, idle ({plan.stop_runs} rounds) and under "
                 f"wrk -c{STOP_CONNECTIONS}")
        rows[image] = {**idle_stops(tag, plan.stop_runs),
                       "under_load": stop_under_load(tag, options=("-eAPP_WORKERS=2",))}
    return rows


# ---- the run -------------------------------------------------------------------------------------------

def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="shorter, fewer runs (about 4 minutes; for CI)")


def run(options: argparse.Namespace) -> dict:
    require_wrk("workers")
    plan = options.plan
    options.builder.build_all(IMAGES)
    seconds, _ = options.builder.build(REFERENCE)
    progress(f"built {REFERENCE.tag} in {seconds:.1f}s")
    quietness = Quietness()
    results = {**run_results.header("quick" if plan.quick else "full", options.command_line, plan),
               "cpus": cpu_facts(VARIANTS["slim"].tag)}
    with quietness.around("socket modes"):
        results["socket_modes"] = socket_mode_study(plan)
    with quietness.around("throughput"):
        results["throughput"] = throughput_rows(plan, results["cpus"]["container_auto_workers"])
    with quietness.around("stops"):
        results["stop"] = stop_rows(plan)
    results["noise"] = quietness.summary()
    return evaluate(run_results.finish(results))


def evaluate(results: dict) -> dict:
    results["targets"], results["failures"] = evaluate_targets(results), failures(results)
    return results


# ---- judging and writing ---------------------------------------------------------------------------------

def rate(r: dict, route: str = "direct") -> float:
    return r["routes"][route]["requests_per_second"]["median"]


def p99(r: dict, route: str = "direct") -> float:
    return r["routes"][route]["p99_seconds"]


def evaluate_targets(results: dict) -> list[dict]:
    t, auto = results["throughput"], results["cpus"]["container_auto_workers"]
    gunicorn, granian = t[f"gunicorn {auto}x{THREADS}"], t.get(f"granian {auto}")
    targets = []
    for image in IMAGES:
        one, many = t[f"{image} APP_WORKERS=1"], t[f"{image} APP_WORKERS=auto"]
        targets += [
            {"target": f"{image}: APP_WORKERS=auto ({auto}) ≥ 1.5× APP_WORKERS=1, direct to the container",
             "measured": f"{rate(many) / rate(one):.2f}× ({rate(many):,.0f} vs {rate(one):,.0f} req/s)",
             "met": rate(many) >= 1.5 * rate(one)},
            {"target": f"{image}: APP_WORKERS=auto ≥ gunicorn gthread {auto}×{THREADS}, direct, p99 no worse",
             "measured": f"{rate(many) / rate(gunicorn):.2f}× gunicorn's req/s; p99 {p99(many) * 1000:.2f} ms "
                         f"vs {p99(gunicorn) * 1000:.2f} ms",
             "met": rate(many) >= rate(gunicorn) and p99(many) <= p99(gunicorn)},
        ]
        if granian is not None:
            targets.append({"target": f"{image}: APP_WORKERS=auto ≥ {GRANIAN_SHARE}× granian's throughput at {auto} "
                                      "workers, direct",
                            "measured": f"{rate(many) / rate(granian):.2f}× ({rate(many):,.0f} vs "
                                        f"{rate(granian):,.0f} req/s)",
                            "met": rate(many) >= GRANIAN_SHARE * rate(granian)})
        stop = results["stop"][image]
        idle, loaded = stop["idle"], stop["under_load"]
        targets.append(
            {"target": f"{image}: docker stop ≤ 0.3 s with 2 workers, exit 0, 0 lost under "
                       f"{STOP_CONNECTIONS}-connection load",
             "measured": f"idle {idle['median']:.2f} s (exit codes {idle['exit_codes']}); under load "
                         f"{loaded['stop_seconds']:.2f} s, exit {loaded['exit_code']}, {loaded['lost']} lost",
             "met": idle["median"] <= 0.3 and not any(idle["exit_codes"]) and loaded["exit_code"] == 0
             and loaded["lost"] == 0})
    return targets


def failures(results: dict) -> list[str]:
    """Guarantees, not targets: with 2 workers no request is lost when stopping and every stop exits 0."""
    problems = []
    for image, stops in results["stop"].items():
        if any(stops["idle"]["exit_codes"]) or stops["under_load"]["exit_code"] != 0:
            problems.append(f"{image} with 2 workers: docker stop left exit codes {stops['idle']['exit_codes']} "
                            f"and {stops['under_load']['exit_code']} under load; every one must be 0")
        if stops["under_load"]["lost"] != 0:
            problems.append(f"{image} with 2 workers: {stops['under_load']['lost']} answered request(s) lost "
                            "when stopping under load")
    return problems


def throughput_table(rows: dict) -> str:
    base = rows["slim APP_WORKERS=1"]
    body = []
    for r in rows.values():
        cells = [r["label"]]
        for route in ("published", "direct"):
            m = r["routes"][route]
            cells += [f"{m['requests_per_second']['median']:,.0f} ({m['requests_per_second']['min']:,.0f}–"
                      f"{m['requests_per_second']['max']:,.0f})", f"{m['p99_seconds'] * 1000:.2f} ms",
                      cpu_per_request(m["cpu_us_per_request"])]
        cells += [f"{rate(r) / rate(base):.2f}×", sum(m["socket_errors"] + m["non_2xx"] for m in r["routes"].values())]
        body.append(cells)
    return table(["server", "req/s via -p (min–max)", "p99 via -p", "CPU per request via -p",
                  "req/s direct (min–max)", "p99 direct", "CPU per request direct", "direct ×slim 1 worker", "errors"],
                 body)


def cpu_not_read(results: dict) -> dict:
    """Format 1 to 2: runs before format 2 did not read the containers' CPU time."""
    for r in results["throughput"].values():
        for route in r["routes"].values():
            route.setdefault("cpu_us_per_request", None)
    return results


def memory_table(rows: dict) -> str:
    body = []
    for r in rows.values():
        procs = r["idle_processes"]
        rss = ", ".join(mib(p["rss_kib"]) for p in sorted(procs, key=lambda p: p["pid"]))
        pss = ", ".join(mib(p["pss_kib"]) if p["pss_kib"] is not None else "–"
                        for p in sorted(procs, key=lambda p: p["pid"]))
        body.append([r["label"], r["process_count"], rss, mib(r["idle_rss_total_kib"]), pss,
                     mib(r["idle_pss_total_kib"])])
    return table(["server", "processes", "RSS each (by pid)", "RSS total", "PSS each", "PSS total"], body)


def socket_table(study: dict) -> str:
    body = []
    for mode, m in study["modes"].items():
        body.append([
            "shared socket, bound before fork" if mode == "shared" else "SO_REUSEPORT, one socket per worker",
            f"{m['requests_per_second']['median']:,.0f} ({m['requests_per_second']['min']:,.0f}–"
            f"{m['requests_per_second']['max']:,.0f})", f"{m['p99_seconds'] * 1000:.2f} ms", m["socket_errors"],
            m["kill_run_failures"], "yes" if m["worker_restarted"] else "**no**",
            "**yes**" if m["second_instance_on_the_port_started"] else "no (exit 1)"])
    return table(["listening socket", "req/s (min–max)", "p99", "socket errors", "failed requests, worker "
                  "killed mid-run", "worker restarted", "a 2nd instance on the same port starts"], body)


def stop_table(stops: dict) -> str:
    body = [[f"`{image}`", f"{s['idle']['median']:.2f} s (max {s['idle']['max']:.2f} s)",
             ", ".join(map(str, s["idle"]["exit_codes"])), f"{s['idle_one_worker']['median']:.2f} s",
             f"{s['under_load']['stop_seconds']:.2f} s",
             s["under_load"]["exit_code"], f"{s['under_load']['answered_by_server']:,}",
             f"{s['under_load']['received_by_client']:,}", s["under_load"]["lost"],
             s["under_load"]["client_socket_errors"]] for image, s in stops.items()]
    return table(["image", "docker stop, idle (median)", "exit codes", "same, 1 worker", "docker stop under load",
                  "exit code",
                  "answered by server", "received by client", "lost", "client socket errors"], body)


def markdown(results: dict) -> str:
    cpus, plan, sockets = results["cpus"], results["plan"], results["socket_modes"]
    targets = targets_table(results["targets"])
    verdict = ("**Guarantees broken:**\n\n" + "\n".join(f"- {f}" for f in results["failures"])
               if results["failures"] else "Every guarantee held: each stop exited 0, no answered request lost.")
    quota = cpus["container_cpu_quota"]
    load = results["load_average"]
    load_line = f"Load average (1 min) at the start and end of the run: {load['start']:.1f} and {load['end']:.1f}."
    return f"""# Workers: APP_WORKERS, and waitress against gunicorn and granian

{results['date']}, {results['mode']} mode (`{results['command']}`). Host: {cpus['host_cpus']} CPUs,
affinity {cpus['host_affinity']}. In a container run without `--cpus`: {cpus['container_cpus_allowed']} CPU(s)
allowed, cgroup quota {'none' if quota is None else quota}, so `APP_WORKERS=auto` is
{cpus['container_auto_workers']}. wrk and the servers share these CPUs: compare rows of one run, not runs.
{load_line} {describe(results.get("noise"))}

{verdict}

## Targets

{targets}

## Listening socket: shared or SO_REUSEPORT

2 workers as host processes on loopback (`APP_WORKERS=2 python -m service`, `APP_REUSE_PORT` false or true;
runs before it was a setting reached the same code through a bench-only switch),
`wrk -c{sockets['connections']} -d{sockets['seconds']}s`, {sockets['runs']} alternating runs each; then a run in
which one worker is killed (`kill -9`) halfway; then a second service started on the same port while the first serves.

{socket_table(sockets)}

## Throughput

`wrk --latency -t2 -c{plan['connections']} -d{plan['seconds']}s --timeout 5s`, {plan['runs']} runs per route after a
1 s warm-up, the two routes alternating in one container: *via -p* is `127.0.0.1:PORT` through Docker's
port mapping; *direct* is the container's bridge address, port 5000. p99 from the median run. All servers
write an access line per request (gunicorn `--access-logfile -`, granian `--access-log`); gunicorn and
granian run from `bench/reference/` (same slim base, same `service.app:create_app`); plain waitress is
`waitress.serve` of the same app in the slim image, with no access log. wrk shares the CPUs with the server,
so req/s moves with what wrk takes; *CPU per request* is the server's own cost: the container's CPU time
(user + system, every process: its cgroup's usage, from the engine's stats) over each run, divided by the 2xx
answers in it. Docker's port proxy is outside the container, so the two routes' CPU figures should agree.

{throughput_table(results['throughput'])}

## Memory, idle

Each process of the container after 20 requests and 2 s (`docker exec ... python3 -c ...`, reading
`/proc/*/status` and `/proc/*/smaps_rollup`). RSS counts the pages forked workers share with their
supervisor in every process; PSS divides them, so PSS total is what the container really holds.

{memory_table(results['throughput'])}

## Stopping 2 workers

`APP_WORKERS=2`: `docker stop` of an idle container ({plan['stop_runs']} runs; *same, 1 worker*: APP_WORKERS=1
in the same rounds, when measured), and 3 s into an 8 s
`wrk -c{STOP_CONNECTIONS}` run (*lost*: access-log lines minus responses wrk completed).

{stop_table(results['stop'])}

Raw figures: [workers.json](workers.json).
"""


STUDY = run_results.Study(
    name="workers", summary="APP_WORKERS=1 vs auto, and gunicorn and granian (minutes)",
    files=("workers.json", "workers.md"), add_options=add_options, run=run,
    render=run_results.markdown_file("workers.md", markdown), evaluate=evaluate,
    guarantees=failures, plans=PLANS, builds=True, upgrades=(cpu_not_read,))
