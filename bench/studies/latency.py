"""`python -m bench latency`: latency at fixed request rates (open loop), every image and the reference servers.

The seed's capacity is measured first, in the same run (wrk, as the throughput study does); then every
subject is loaded in turn at 25%, 50% and 75% of it by bench/openloop.py, which sends on schedule and
records every latency, so a stall counts for every request it delays. All through the `-p` mapping, the
route a user's client takes. Beside the images: gunicorn (gthread, 1 process x 8 threads) and granian (WSGI, 1
worker) serve the same app from bench/reference/, one process each like the images.
"""

import argparse
import statistics
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from images.docker import progress
from images.variants import VARIANTS

from .. import results as run_results
from ..containers import running
from ..load import wrk
from ..noise import Quietness, describe
from ..openloop import open_loop
from ..reference_servers import REFERENCE
from ..render import table, targets_table

SHARES = (0.25, 0.50, 0.75)  # of the seed's capacity
PROJECT = ("slim", "distroless", "micro")
SUBJECTS = {  # label -> (image variant, docker run options)
    "seed": ("seed", []),
    "slim": ("slim", []),
    "distroless": ("distroless", []),
    "micro": ("micro", []),
    "gunicorn 1×8": ("reference", ["-eSERVER=gunicorn", "-eWORKERS=1", "-eTHREADS=8"]),
    "granian 1": ("reference", ["-eSERVER=granian", "-eWORKERS=1", "-eTHREADS=8"]),
}
P99_SHARE_OF_SEED = 0.5
ROUNDS_NOTE = ", from the round with the median p99 (of two, the worse); the p99 range over rounds in brackets"


def tag_of(variant: str) -> str:
    return REFERENCE.tag if variant == "reference" else VARIANTS[variant].tag


PLANS = {"quick": {"quick": True, "seconds": 3, "rounds": 1, "capacity_seconds": 3, "capacity_runs": 2},
         "full": {"quick": False, "seconds": 10, "rounds": 2, "capacity_seconds": 5, "capacity_runs": 3}}


def seed_capacity(port: int, plan: dict) -> float:
    wrk(port, 1, 16)  # warm-up
    runs = [wrk(port, plan["capacity_seconds"], 16)["requests_per_second"] for _ in range(plan["capacity_runs"])]
    return statistics.median(runs)


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="one 3 s round per rate instead of two of 10 s")


def run(options: argparse.Namespace) -> dict:
    plan = options.plan
    options.builder.build_all(("seed", *PROJECT))
    options.builder.build(REFERENCE)
    quietness = Quietness()
    samples: dict[str, dict[str, list[dict]]] = {label: {} for label in SUBJECTS}
    with all_running() as ports:
        with quietness.around("seed capacity"):
            capacity = seed_capacity(ports["seed"], plan)
        rates = [round(capacity * share) for share in SHARES]
        progress(f"seed capacity {capacity:,.0f} req/s: open-loop rates {rates}")
        for port in ports.values():
            open_loop(port, rates[0], 1)  # warm-up: connections, bytecode, first answers
        for number in range(plan["rounds"]):
            for rate in rates:
                order = list(SUBJECTS) if number % 2 == 0 else list(SUBJECTS)[::-1]
                with quietness.around(f"round {number + 1}, {rate} req/s"):
                    for label in order:
                        result = open_loop(ports[label], rate, plan["seconds"])
                        samples[label].setdefault(str(rate), []).append(result)
                        progress(f"{label} at {rate} req/s: p50 {result['p50_seconds'] * 1000:.2f} ms, p99 "
                                 f"{result['p99_seconds'] * 1000:.2f} ms, p99.9 {result['p999_seconds'] * 1000:.2f}"
                                 f" ms, {result['errors']} errors")
    results = {**run_results.header("quick" if options.quick else "full", options.command_line, plan),
               "seed_capacity": capacity, "rates": rates, "shares": list(SHARES),
               "subjects": {label: {rate: median_p99_round(runs) for rate, runs in by_rate.items()}
                            for label, by_rate in samples.items()},
               "noise": quietness.summary()}
    return evaluate(run_results.finish(results))


def evaluate(results: dict) -> dict:
    results["targets"] = evaluate_targets(results)
    return results


def subjects_and_targets(results: dict) -> dict:
    """Format 1 to 2: what was measured was under "targets" and the goals under "goals"; now "subjects"
    and "targets", as in every other study."""
    names = {"targets": "subjects", "goals": "targets"}
    return {names.get(key, key): value for key, value in results.items()}


@contextmanager
def all_running() -> Iterator[dict[str, int]]:
    """Every subject running at once (idle but for the load), each through its own -p port."""
    with ExitStack() as stack:
        yield {label: stack.enter_context(running(tag_of(variant), *options))[1]
               for label, (variant, options) in SUBJECTS.items()}


def median_p99_round(runs: list[dict]) -> dict:
    """The run with the median p99, the upper one of an even count (its p50, p99, p99.9 together), the
    range of p99 over runs, totals."""
    by_p99 = sorted(runs, key=lambda r: r["p99_seconds"])
    middle = by_p99[len(by_p99) // 2]
    return {"p50_seconds": middle["p50_seconds"], "p99_seconds": middle["p99_seconds"],
            "p999_seconds": middle["p999_seconds"], "p99_min_seconds": by_p99[0]["p99_seconds"],
            "p99_max_seconds": by_p99[-1]["p99_seconds"], "runs": len(runs),
            "sent": sum(r["sent"] for r in runs), "errors": sum(r["errors"] for r in runs),
            "non_2xx": sum(r["non_2xx"] for r in runs),
            "achieved_rate": statistics.median(r["achieved_rate"] for r in runs),
            "send_lateness_p99_seconds": max(r["send_lateness_p99_seconds"] for r in runs),
            "rounds": runs}


def evaluate_targets(results: dict) -> list[dict]:
    goals = []
    t = results["subjects"]
    for rate in map(str, results["rates"]):
        seed, gunicorn = t["seed"][rate]["p99_seconds"], t["gunicorn 1×8"][rate]["p99_seconds"]
        for name in PROJECT:
            mine = t[name][rate]["p99_seconds"]
            goals.append({"target": f"{name} at {rate} req/s: p99 ≤ {P99_SHARE_OF_SEED}× seed's and ≤ gunicorn's",
                          "measured": f"{mine * 1000:.2f} ms ({mine / seed:.2f}× seed's {seed * 1000:.2f} ms; "
                                      f"gunicorn {gunicorn * 1000:.2f} ms)",
                          "met": mine <= P99_SHARE_OF_SEED * seed and mine <= gunicorn})
    return goals


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def latency_table(results: dict) -> str:
    rows = []
    for label, by_rate in results["subjects"].items():
        cells = [f"{ms(r['p50_seconds'])} / {ms(r['p99_seconds'])} / {ms(r['p999_seconds'])}"
                 + (f" ({ms(r['p99_min_seconds'])}–{ms(r['p99_max_seconds'])})" if r["runs"] > 1 else "")
                 + (f", **{r['errors'] + r['non_2xx']} failed**" if r["errors"] + r["non_2xx"] else "")
                 for r in (by_rate[str(rate)] for rate in results["rates"])]
        rows.append([f"`{label}`", *cells])
    header = ["server", *(f"{rate} req/s ({share:.0%} of seed)" for rate, share in
                          zip(results["rates"], results["shares"], strict=True))]
    return table(header, rows)


def markdown(results: dict) -> str:
    plan = results["plan"]
    goals = targets_table(results["targets"])
    lateness = max(r["send_lateness_p99_seconds"] for by_rate in results["subjects"].values()
                   for r in by_rate.values())
    return f"""# Latency at fixed request rates (open loop)

{'Quick' if plan['quick'] else 'Full'} mode. {describe(results.get('noise'))}

The seed's capacity, measured first in this run (`wrk -t2 -c16`, median of {plan['capacity_runs']} runs of
{plan['capacity_seconds']} s through `-p`): **{results['seed_capacity']:,.0f} req/s**. Each server was then
loaded at {', '.join(f'{s:.0%}' for s in results['shares'])} of it by `bench/openloop.py`: requests sent on a
fixed schedule over up to 64 keep-alive connections, every latency recorded from the moment the request was
dispatched (waiting for a free connection included), so a stall counts for every request it delays
(wrk's closed loop hides it). {plan['rounds']} round(s) of {plan['seconds']} s per server and rate, servers
in alternating order; all containers running at once, through the `-p` mapping. The generator's own sends
were at most {lateness * 1000:.2f} ms late at the 99th percentile.

p50 / p99 / p99.9 in ms{ROUNDS_NOTE if plan['rounds'] > 1 else ''}:

{latency_table(results)}

## Targets

{goals}

`gunicorn 1×8`: gunicorn gthread, 1 process × 8 threads; `granian 1`: granian WSGI, 1 worker; both serve
`service.app:create_app` from `bench/reference/` on the slim base. Raw figures: [latency.json](latency.json).
"""


def shape(results: dict) -> list[str]:
    measured = set(results["subjects"])
    return [] if measured == set(SUBJECTS) else [f"measured {sorted(measured)}, not every subject {sorted(SUBJECTS)}"]


STUDY = run_results.Study(
    name="latency", summary="latency at fixed request rates (open loop): every image, seed, gunicorn, granian "
                            "(minutes)",
    files=("latency.json", "latency.md"), add_options=add_options, run=run,
    render=run_results.markdown_file("latency.md", markdown), evaluate=evaluate,
    shape=shape, plans=PLANS, builds=True, upgrades=(subjects_and_targets,))
