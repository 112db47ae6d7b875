"""`python -m bench commits REV...`: the service as it was at each commit, side by side in one run.

When a figure moves between committed runs, this says whether the code moved it: each revision's
`service/` is taken with `git archive` into a temporary tree and served on loopback as host processes
(`python -m service`, APP_LOG_LEVEL=WARNING, the current interpreter and waitress), beside plain waitress
serving today's app as the control; wrk loads them in alternating rounds, the order rotated each round.
Beside req/s (wrk and the servers share the CPUs) it records each server's own CPU time per answered request,
read from /proc before and after each run: what a request costs the server, whatever wrk took.
"""

import argparse
import tempfile
from contextlib import ExitStack
from pathlib import Path

from images.docker import progress

from .. import results as run_results
from ..control import THREADS, Listening, host_server
from ..load import CONNECTIONS, complete_summary, with_cpu, wrk
from ..noise import Quietness, describe
from ..processes import cpu_seconds
from ..render import cpu_per_request, table
from ..revisions import described, source_tree

CONTROL = "plain waitress"


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("revisions", nargs="+", help="git revisions, e.g. 4324f7c HEAD")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--seconds", type=int, default=5, help="seconds per wrk run (default 5)")


def run(options: argparse.Namespace) -> dict:
    revisions, rounds, seconds = options.revisions, options.rounds, options.seconds
    quietness = Quietness()
    samples: dict[str, list[dict]] = {label: [] for label in [*revisions, CONTROL]}
    with tempfile.TemporaryDirectory(prefix="hello-api-commits-") as work, ExitStack() as stack:
        servers = {rev: stack.enter_context(host_server("service", THREADS, source_tree(rev, Path(work))))
                   for rev in revisions}
        servers[CONTROL] = stack.enter_context(host_server("plain", THREADS))
        for server in servers.values():
            wrk(server.port, 1, CONNECTIONS, host=server.host)  # warm-up
        with quietness.around("alternating rounds"):
            for number in range(rounds):
                order = list(servers) if number % 2 == 0 else list(servers)[::-1]
                for label in order:
                    samples[label].append(measured_run(servers[label], seconds))
                progress(f"round {number + 1}/{rounds}: " + ", ".join(
                    f"{label} {runs[-1]['requests_per_second']:,.0f}" for label, runs in samples.items()))
    results = {**run_results.header("full", options.command_line), "rounds": rounds, "seconds": seconds,
               "threads": THREADS, "connections": CONNECTIONS,
               "revisions": {rev: described(rev) for rev in revisions},
               "servers": {label: {key: complete_summary([run[key] for run in runs])
                                   for key in ("requests_per_second", "p99_seconds", "cpu_us_per_request")}
                           for label, runs in samples.items()},
               "noise": quietness.summary()}
    return run_results.finish(results)


def measured_run(server: Listening, seconds: int) -> dict:
    """One wrk run against `server`, with the server process's CPU time per answered request over that run."""
    return with_cpu(lambda: wrk(server.port, seconds, CONNECTIONS, host=server.host),
                    lambda: cpu_seconds(server.pid) * 1e9)


def with_cpu_not_measured(results: dict) -> dict:
    """Format 1 to 2: runs before format 2 did not read the servers' CPU time."""
    for server in results["servers"].values():
        server.setdefault("cpu_us_per_request", None)
    return results


def markdown(results: dict) -> str:
    control = results["servers"][CONTROL]["requests_per_second"]["median"]
    rows = []
    for label, server in results["servers"].items():
        rps, p99 = server["requests_per_second"], server["p99_seconds"]
        rows.append([f"`{label}`" if label != CONTROL else label, results["revisions"].get(label, "the control"),
                     f"{rps['median']:,.0f} ({rps['min']:,.0f}–{rps['max']:,.0f})", f"{rps['median'] / control:.2f}×",
                     cpu_per_request(server["cpu_us_per_request"]),
                     f"{p99['median'] * 1000:.1f} ms ({p99['min'] * 1000:.1f}–{p99['max'] * 1000:.1f})"])
    return f"""# The service at several commits, side by side

`{results['command']}`: each revision's `service/` served on loopback (`python -m service`,
APP_LOG_LEVEL=WARNING, {results['threads']} threads) beside plain waitress serving today's app; {results['rounds']}
alternating rounds of `wrk --latency -t2 -c{results['connections']} -d{results['seconds']}s`, median (min–max).
"server CPU" is the server process's own CPU time (user + system, all threads) per answered request.
{describe(results.get('noise'))}

{table(["server", "commit", "req/s", "× plain waitress", "server CPU per request", "p99"], rows)}
"""


STUDY = run_results.Study(
    name="commits", summary="the service at several commits side by side on loopback, with plain waitress as "
                            "the control (a minute or two)",
    files=("commits.json", "commits.md"), add_options=add_options, run=run,
    render=run_results.markdown_file("commits.md", markdown), upgrades=(with_cpu_not_measured,))
