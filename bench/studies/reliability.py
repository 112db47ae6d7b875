"""`python -m bench reliability`: the long checks, too slow for the test suite.

- soak: wrk at 64 connections for 60 s (quick: 20 s): socket errors, non-2xx, and RSS growth between
  10 s in and the end;
- stop under load: `docker stop` while wrk runs: the server's access log (what it answered) against what
  wrk received, the exit code, and the client-side failures, counted.
- lockout: 1,000 silent and 50 dripping sockets held open; how long fresh clients wait for /health.
- pipelining: 50 connections each pipelining 431 requests in one write; how long fresh clients wait.
- select() against poll(): the same image and load, each event loop in alternating runs.
- a hostile crowd (bench/crowd.py): thousands of seeded, randomised connections (silent, dripping heads and
  bodies, unfinished chunked bodies, pipelined bursts, half closes, resets, refused requests, well-formed ones),
  past APP_CONNECTION_LIMIT, while a probe times a fresh client every 0.5 s; against the default settings and
  APP_CONNECTION_LIMIT=50, with APP_WORKERS=1 and 2, as `python -m service` on loopback and in the distroless
  image straight at its address. Full: 8 runs of 30 s; quick: 4 runs of 8 s, each setting and worker count
  once, two local, two in the image. A run the server did not hold is a broken guarantee; each is printed
  with its seed and the command that replays it (`--crowd-seed` replays one seed in every run).
Loopback and the project's own containers only; every run is bounded in count and time.
"""

import argparse
import contextlib
import socket
import statistics
import threading
import time

from images.docker import progress
from images.variants import PROJECT_IMAGES, VARIANTS

from .. import crowd
from .. import results as run_results
from ..containers import CONTAINER_PORT, container_ip, get_status, rss_kib, running
from ..image_measures import Subject, load_study
from ..load import summary, wrk
from ..noise import Quietness, describe
from ..processes import allow_open_files
from ..render import ms, table
from ..stopping import CONNECTIONS, stop_under_load

LORIS_ROUTE = ("Straight to the container's address: Docker's port proxy dials the server for each client in "
               "parallel, so through it a fresh client can arrive before hostile connections opened earlier.")
FRESH_CLIENT_TIMEOUT = 5.0


def soak(tag: str, seconds: int) -> dict:
    with running(tag) as (name, port):
        samples = {}

        def sample_at(offset: float, label: str) -> threading.Timer:
            timer = threading.Timer(offset, lambda: samples.__setitem__(label, rss_kib(name)))
            timer.start()
            return timer

        timers = [sample_at(10, "rss_at_10s_kib"), sample_at(seconds - 1, "rss_at_end_kib")]
        result = wrk(port, seconds, CONNECTIONS, path="/hello/soak")
        for timer in timers:
            timer.join()
    growth = samples["rss_at_end_kib"] / samples["rss_at_10s_kib"] - 1
    return {**result, **samples, "seconds": seconds, "connections": CONNECTIONS, "rss_growth": growth,
            "ok": result["socket_errors"] == 0 and result["non_2xx"] == 0 and growth < 0.10}


def threads_before_after(tag: str, seconds: int) -> dict:
    """waitress's default 4 worker threads against this project's 8, same image, same load."""
    return {str(threads): load_study(Subject(tag, tag, env=(f"APP_THREADS={threads}",)), seconds, CONNECTIONS, runs=2)
            for threads in (4, 8)}


def slowloris_before_after(tag: str, connections: int = 300) -> dict:
    """Half-sent requests against waitress's default connection limit (100) and this project's (1000):
    is a fresh client still answered within 1 s? Straight to the container's address: Docker's port proxy
    dials the server for each client in parallel, so a fresh client could reach it before hostile
    connections opened earlier, and be the one that has waited longest when they arrive."""
    outcome = {}
    for limit in (100, 1000):
        with running(tag, f"-eAPP_CONNECTION_LIMIT={limit}") as (name, _):
            address, idle = container_ip(name), []
            try:
                for _ in range(connections):
                    idle.append(socket.create_connection((address, CONTAINER_PORT), timeout=5))
                    idle[-1].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                outcome[str(limit)] = get_status(CONTAINER_PORT, timeout=1.0, host=address) == 200
            finally:
                for connection in idle:
                    connection.close()
    return {"half_sent_connections": connections, "fresh_client_served": outcome, "route": "direct"}


def fresh_client_seconds(port: int) -> float | None:
    """Seconds for a new connection's GET /health to be answered 200, or None (not within 5 s)."""
    return crowd.health_seconds("127.0.0.1", port, timeout=FRESH_CLIENT_TIMEOUT)


def sample_fresh_clients(port: int, samples: int, interval: float, between=None) -> dict:
    latencies = []
    for _ in range(samples):
        latencies.append(fresh_client_seconds(port))
        if between:
            between()
        time.sleep(interval)
    served = [s for s in latencies if s is not None]
    return {"fresh_clients": samples, "fresh_clients_served": len(served),
            "fresh_client_seconds": summary(served) if served else None}


def lockout(tag: str, silent: int = 1000, dripping: int = 50, samples: int = 10) -> dict:
    """Fresh clients while `silent` sockets send nothing and `dripping` ones send a header byte at a time."""
    allow_open_files(4 * (silent + dripping))
    with running(tag) as (_, port):
        held: list[socket.socket] = []
        try:
            held += [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(silent)]
            drippers = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(dripping)]
            held += drippers
            for connection in drippers:
                connection.sendall(b"GET /health HTTP/1.1\r\nX-Slow: ")

            def drip() -> None:
                for connection in drippers:
                    with contextlib.suppress(OSError):  # closed by the server: what the receive timeout is for
                        connection.sendall(b"x")

            outcome = sample_fresh_clients(port, samples, 0.2, between=drip)
        finally:
            for connection in held:
                connection.close()
    return {"silent": silent, "dripping": dripping, **outcome}


def pipelining(tag: str, connections: int = 50, depth: int = 431, samples: int = 10) -> dict:
    """Fresh clients while `connections` each pipeline `depth` requests in one write."""
    allow_open_files(4 * connections)
    request = b"GET /health HTTP/1.1\r\nHost: bench\r\n\r\n"
    with running(tag) as (_, port):
        hogs = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(connections)]
        try:
            for hog in hogs:
                hog.sendall(request * depth)
            outcome = sample_fresh_clients(port, samples, 0.1)
        finally:
            for hog in hogs:
                hog.close()
    return {"connections": connections, "pipelined_each": depth, **outcome}


def select_against_poll(tag: str, seconds: int, rounds: int) -> dict:
    """Alternating runs, same image and load: APP_CONNECTION_LIMIT 1000 keeps select(); 2000 needs more
    than 1024 descriptors, so the server switches to poll()."""
    runs: dict[str, list[dict]] = {"select": [], "poll": []}
    for _ in range(rounds):
        for loop, limit in (("select", 1000), ("poll", 2000)):
            runs[loop].append(load_study(Subject(tag, tag, env=(f"APP_CONNECTION_LIMIT={limit}",)), seconds, 16,
                                         runs=1))
    return {loop: {"requests_per_second": summary([r["requests_per_second"]["median"] for r in results]),
                   "p99_seconds": statistics.median(r["p99_seconds"] for r in results),
                   "seconds": seconds, "connections": 16}
            for loop, results in runs.items()}


CROWD_IMAGE = "distroless"
CROWD_LIMIT = 50  # the other setting the crowd stands against, beside the default (1000)


def crowd_settings(workers: int, connection_limit: int | None) -> dict[str, str]:
    return {"APP_WORKERS": str(workers),
            **({"APP_CONNECTION_LIMIT": str(connection_limit)} if connection_limit is not None else {})}


def crowd_runs(plan: dict, seed: int | None) -> list[dict]:
    """The hostile crowd (bench/crowd.py) against each server and setting of the plan, a probe beside it."""
    runs = []
    for where, workers, limit in plan["crowd_runs"]:
        settings = crowd_settings(workers, limit)
        image = VARIANTS[where].tag if where != "local" else None
        run_seed = crowd.new_seed() if seed is None else seed
        command = crowd.replay_command(run_seed, plan["crowd_connections"], plan["crowd_seconds"], settings, image)
        progress(f"crowd: {image or 'python -m service on loopback'}, {settings}, seed {run_seed}: $ {command}")
        server = crowd.container_service(image, settings) if image else crowd.local_service(settings)
        with server as served:
            outcome = crowd.stand(served, run_seed, plan["crowd_connections"], plan["crowd_seconds"])
        progress(f"crowd, seed {run_seed}: " + ("held" if outcome["held"] else "did not hold: "
                                                 + "; ".join(outcome["reasons"])))
        runs.append({"server": where, "settings": settings, "command": command, **outcome})
    return runs


PLANS = {"quick": {"soak_seconds": 20, "threads_seconds": 5, "loop_seconds": 3, "loop_rounds": 2,
                   "crowd_seconds": 8, "crowd_connections": 2500,  # each setting and worker count once
                   "crowd_runs": [("local", 1, None), ("local", 2, CROWD_LIMIT), (CROWD_IMAGE, 1, CROWD_LIMIT),
                                  (CROWD_IMAGE, 2, None)]},
         "full": {"soak_seconds": 60, "threads_seconds": 10, "loop_seconds": 10, "loop_rounds": 5,
                  "crowd_seconds": 30, "crowd_connections": 4000,
                  "crowd_runs": [(where, workers, limit) for where in ("local", CROWD_IMAGE) for workers in (1, 2)
                                 for limit in (None, CROWD_LIMIT)]}}


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a 20 s soak instead of 60 s, 4 crowds of 8 s "
                                                             "instead of 8 of 30 s")
    parser.add_argument("--crowd-seed", type=int, help="every crowd plays this seed (default: a new one each, "
                                                       "printed with the command that replays it)")


def run(options: argparse.Namespace) -> dict:
    options.builder.build_all(PROJECT_IMAGES)
    plan = options.plan
    seconds = plan["soak_seconds"]
    results = {**run_results.header("quick" if options.quick else "full", options.command_line, plan),
               "images": {}}
    quietness = Quietness()
    for name in PROJECT_IMAGES:
        tag = VARIANTS[name].tag
        progress(f"soak: {tag}, wrk -c{CONNECTIONS} for {seconds}s")
        with quietness.around(f"soak: {name}"):
            results["images"][name] = {"soak": soak(tag, seconds)}
        progress(f"stop under load: {tag}")
        results["images"][name]["stop_under_load"] = stop_under_load(tag)
        progress(f"lockout: {tag}, 1000 silent and 50 dripping sockets, then fresh clients")
        results["images"][name]["lockout"] = lockout(tag)
        progress(f"pipelining: {tag}, 50 connections x 431 pipelined requests, then fresh clients")
        results["images"][name]["pipelining"] = pipelining(tag)
    slim = VARIANTS["slim"].tag
    progress(f"tuning record: APP_THREADS 4 vs 8 on {slim}")
    with quietness.around("threads 4 and 8"):
        results["tuning"] = {"threads": threads_before_after(slim, plan["threads_seconds"])}
    progress(f"tuning record: slowloris against APP_CONNECTION_LIMIT 100 vs 1000 on {slim}")
    results["tuning"]["connection_limit"] = slowloris_before_after(slim)
    progress(f"tuning record: select() against poll() on {slim}")
    with quietness.around("select and poll"):
        results["tuning"]["event_loop"] = select_against_poll(slim, plan["loop_seconds"], plan["loop_rounds"])
    progress(f"crowd: {len(plan['crowd_runs'])} runs of {plan['crowd_connections']} hostile connections for "
             f"{plan['crowd_seconds']} s each")
    results["crowd"] = crowd_runs(plan, options.crowd_seed)
    results["noise"] = quietness.summary()
    return evaluate(run_results.finish(results))


def without_crowd(results: dict) -> dict:
    """Format 1 to 2: runs made before the hostile crowd (issue 24) threw none."""
    results.setdefault("crowd", [])
    return results


def evaluate(results: dict) -> dict:
    results["failures"] = failures(results)
    return results


def failures(results: dict) -> list[str]:
    """From reliability.json: no lost request, no killed container, no error under the soak, no lockout."""
    problems = []
    for name, checks in results.get("images", {}).items():
        soak, stop = checks["soak"], checks["stop_under_load"]
        if soak["socket_errors"] or soak["non_2xx"]:
            problems.append(f"{name}: the soak saw {soak['socket_errors']} socket error(s) and {soak['non_2xx']} "
                            "non-2xx answer(s); both must be 0")
        if stop["lost"] != 0:
            problems.append(f"{name}: stopping under load, the server answered {stop['answered_by_server']} "
                            f"requests but the client received {stop['received_by_client']}: "
                            f"{stop['lost']} lost")
        if stop["exit_code"] != 0:
            problems.append(f"{name}: stopping under load ended with exit code {stop['exit_code']}, not 0")
        lockout = checks.get("lockout")
        if lockout is not None and lockout["fresh_clients_served"] != lockout["fresh_clients"]:
            problems.append(f"{name}: with {lockout['silent']} silent and {lockout['dripping']} dripping sockets "
                            f"open, {lockout['fresh_clients'] - lockout['fresh_clients_served']} of "
                            f"{lockout['fresh_clients']} fresh clients were not served")
    for run in results.get("crowd", []):
        if not run["held"]:
            problems.append(f"the crowd against {crowd_label(run)} (seed {run['seed']}) broke it: "
                            + "; ".join(run["reasons"]) + f" (replay: {run['command']})")
    return problems


def crowd_label(run: dict) -> str:
    where = "python -m service" if run["server"] == "local" else f"`{run['server']}`"
    return f"{where}, " + " ".join(f"{key}={value}" for key, value in run["settings"].items())


def milliseconds(seconds: float | None) -> str:
    return "–" if seconds is None else ms(seconds)


def crowd_section(runs: list[dict]) -> str:
    if not runs:
        return ""
    first = runs[0]
    behaviours = list(first["crowd"]["by_behaviour"])
    rows, commands = [], []
    for run in runs:
        probe, fds, opened = run["probe"], run["descriptors"], run["crowd"]["by_behaviour"]
        rows.append([crowd_label(run), run["seed"], *(f"{opened[b]['opened']:,}" for b in behaviours),
                     f"{run['crowd']['peak_open']:,}",
                     " / ".join(milliseconds(probe[k]) for k in ("p50_seconds", "p99_seconds", "max_seconds")),
                     f"{probe['failures']} of {probe['probes']}" + (f" ({unanswered} unanswered)" if (
                         unanswered := probe["probes"] - probe["answered"]) else ""),
                     "alive" if run["alive"] else f"**exited {run['exit_code']}**",
                     f"{fds['idle']} → {fds['peak']:,} → {fds['after']}", "yes" if run["held"] else "**no**"])
        commands.append(f"- seed {run['seed']}: `{run['command']}`"
                        + ("" if run["held"] else f": **{'; '.join(run['reasons'])}**"))
    crowd_table = table(["server, settings", "seed", *behaviours, "held open at once", "probe p50 / p99 / max",
                         "probes failed", "server", "descriptors idle → peak → after", "held"], rows)
    made = first["design"]
    shares = ", ".join(f"{name} {share:.0%}" for name, share in made["behaviours"].items())
    return f"""## A hostile crowd

[bench/crowd.py](../../crowd.py): {first['connections']:,} connections in {first['seconds']:g} s, planned by one
seeded `random.Random`: {made['surge_share']:.0%} of them arrive in the first second, the rest over the first
{made['arrival_share']:.0%} of the run, each behaving as drawn ({shares}): silent; a request head dripped a byte
at a time; a body dripped after its Content-Length head; a chunked body left unfinished; a pipelined burst (half
never read); a half close (`shutdown(SHUT_WR)` after part or all of a request); a reset (`SO_LINGER` 0, then
close); a refused request (not HTTP, or no Host), then silence; a well-formed request. Drips wait
{made['drip_seconds'][0]:g}–{made['drip_seconds'][1]:g} s between bytes. All but the well-formed stay connected
when the server closes, until their own time ({made['staying_share']:.0%} stay to the end); what is still open
when the time is up is closed. One thread, non-blocking sockets. Beside it a probe opens a fresh connection
every {made['probe_interval_seconds']:g} s, sends `GET /health` and times the answer
({made['probe_timeout_seconds']:g} s timeout). The local server is `python -m service` on loopback; the image is
reached straight at the container's address. *Held*: the server never exited, no "Traceback" or "CRITICAL" in
its log, no process replaced, every probe answered 200 within {made['probe_bound_seconds']:g} s (*unanswered*:
no 200 within the timeout, or the connection closed or reset), and within {made['settle_seconds']:g} s of the
crowd leaving, its open descriptors (all its processes', from `/proc/PID/fd`) were back at their idle count.
Opened by behaviour, then the most the crowd held open at once:

{crowd_table}

Each run again, the same crowd against the same server (the seed plans every connection; timing still varies):

{chr(10).join(commands)}

"""


def markdown(results: dict) -> str:
    soak_rows, stop_rows = [], []
    for name, r in results["images"].items():
        s, t = r["soak"], r["stop_under_load"]
        soak_rows.append(f"| `{name}` | {s['requests_per_second']:,.0f} | {s['p99_seconds'] * 1000:.1f} ms | "
                         f"{s['socket_errors']} | {s['non_2xx']} | {s['rss_at_10s_kib'] / 1024:.1f} → "
                         f"{s['rss_at_end_kib'] / 1024:.1f} MiB ({s['rss_growth']:+.1%}) | "
                         f"{'yes' if s['ok'] else '**no**'} |")
        stop_rows.append(f"| `{name}` | {t['exit_code']} | {t['stop_seconds']:.2f} s | {t['answered_by_server']:,} | "
                         f"{t['received_by_client']:,} | {t['lost']} | {t['client_socket_errors']:,} | "
                         f"{'yes' if t['ok'] else '**no**'} |")
    first = next(iter(results["images"].values()))["soak"]
    threads = results["tuning"]["threads"]
    thread_rows = "\n".join(
        f"| {n} | {t['requests_per_second']['median']:,.0f} | {t['p50_seconds'] * 1000:.1f} ms | "
        f"{t['p99_seconds'] * 1000:.1f} ms | {t['socket_errors']} |" for n, t in threads.items())
    hostile_rows = []
    for name, r in results["images"].items():
        for label, case in (("1,000 silent + 50 dripping sockets", r.get("lockout")),
                            ("50 connections × 431 pipelined requests", r.get("pipelining"))):
            if case is None:
                continue
            latency = case["fresh_client_seconds"]
            hostile_rows.append(f"| `{name}` | {label} | {case['fresh_clients_served']} of {case['fresh_clients']} | "
                                + (f"{latency['median'] * 1000:.0f} ms | {latency['max'] * 1000:.0f} ms |"
                                   if latency else "– | – |"))
    loops = results["tuning"].get("event_loop", {})
    loop_rows = "\n".join(
        f"| {loop} | {rate['median']:,.0f} | {rate['min']:,.0f}–{rate['max']:,.0f} | {rate['runs']} | "
        f"{r['p99_seconds'] * 1000:.1f} ms |" for loop, r in loops.items() for rate in [r["requests_per_second"]])
    hostile_section = "" if not hostile_rows else f"""## Hostile clients

Fresh clients (a new connection, `GET /health`, 5 s timeout), 10 of them, while other sockets misbehave:
silent ones send nothing, dripping ones send a byte of an unfinished header every 0.2 s, pipelining ones
send 431 requests in one write and read nothing. Default settings (`APP_CONNECTION_LIMIT=1000`,
`APP_RECEIVE_TIMEOUT=5`), through the `-p` mapping.

| image | other sockets | fresh clients served | median wait | max wait |
|---|---|---|---|---|
{chr(10).join(hostile_rows)}

"""
    loop_section = "" if not loops else "\n" + f"""Event loop: `select()` (while the connection limit fits under 1,024
descriptors) against `poll()` (`APP_CONNECTION_LIMIT=2000` switches to it), `wrk -c16`, alternating runs,
one container each:

| loop | req/s (median) | range | runs | p99 (median) |
|---|---|---|---|---|
{loop_rows}
"""
    failures = results["failures"]
    if failures:
        verdict = "**Guarantees broken:**\n\n" + "\n".join(f"- {failure}" for failure in failures) + "\n\n"
    else:
        verdict = ("Every guarantee held: no lost request, no killed container, no socket error or non-2xx in "
                   "the soak, no fresh client locked out.\n\n")
    loris = results["tuning"]["connection_limit"]
    loris_rows = "\n".join(f"| {limit} | {'yes' if served else '**no**'} |"
                            for limit, served in loris["fresh_client_served"].items())
    return f"""# Reliability: {results['mode']} run, {results['date']}

{describe(results.get('noise'))}

{verdict}## Soak

`wrk --latency -t2 -c{first['connections']} -d{first['seconds']}s --timeout 5s http://127.0.0.1:PORT/hello/soak`
through the `-p` mapping; RSS of the server (PID 1) 10 s in and 1 s before the end. Passes with no socket
errors, no non-2xx and RSS growth under 10%.

| image | req/s | p99 | socket errors | non-2xx | RSS 10 s → end | passes |
|---|---|---|---|---|---|---|
{chr(10).join(soak_rows)}

## Stop under load

`docker stop` 3 s into an 8 s `wrk -c{CONNECTIONS}` run. *Answered by server*: access-log lines; *received by
client*: responses wrk completed; *lost* is their difference and must be 0. Client socket errors are the
connections refused or closed after the server stopped listening, counted, not hidden.

| image | exit code | stop took | answered by server | received by client | lost | client socket errors | passes |
|---|---|---|---|---|---|---|---|
{chr(10).join(stop_rows)}

{hostile_section}{crowd_section(results["crowd"])}## Tuning record (slim image)

Worker threads, before (waitress's default) and after (this project's default), `wrk -c{CONNECTIONS}`,
median of 2 runs of {next(iter(threads.values()))['seconds']} s each:

| APP_THREADS | req/s | p50 | p99 | socket errors |
|---|---|---|---|---|
{thread_rows}

Connection limit, before (waitress's default 100) and after (this project's 1000): with
{loris['half_sent_connections']} half-sent requests held open, does a fresh client get `/health` 200 within 1 s?
{LORIS_ROUTE}

| APP_CONNECTION_LIMIT | fresh client served |
|---|---|
{loris_rows}
{loop_section}"""


STUDY = run_results.Study(
    name="reliability", summary="soak, stop under load, hostile clients (minutes)",
    files=("reliability.json", "reliability.md"), add_options=add_options, run=run,
    render=run_results.markdown_file("reliability.md", markdown),
    evaluate=evaluate, guarantees=failures, plans=PLANS, builds=True, upgrades=(without_crowd,))
