"""`python -m bench rollout`: what a user's clients feel while every replica is replaced.

For each image (seed, slim, distroless, and micro where it is built) the swarm stack (deploy/swarm/stack.yaml)
is deployed together with deploy/swarm/no-retry.yaml: the same replicas behind two HAProxy balancers, one
that retries (what the stack ships) and one that does not (what an L4 balancer such as kube-proxy gives).
A steady client load goes through both while `docker service update --force` rolls every replica; each
request is counted as answered 2xx or failed by kind. On one host, the same client load goes to the Compose
service during `docker compose up -d --force-recreate`.

Loopback and the project's own containers only; every load and every wait is bounded in time. The swarm is
left as found: the bench leaves swarm mode if it initialised it, and removes its stacks either way. The
swarm and Compose steps are bench/deploy.py's; this module is the client load, the measurement and the report.
"""

import argparse
import http.client
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from images.docker import docker, image_exists, progress
from images.variants import DEPLOY_IMAGES, VARIANTS

from .. import results as run_results
from ..deploy import compose, compose_project, deployed_stack, must_answer, roll, swarm_mode
from ..load import summary
from ..noise import Quietness, describe
from ..render import table

PREFIX = "hello-api-rollout"
CONFIGS = {"retrying": "lb", "no_retry": "lb-noretry"}  # configuration → swarm service (without the stack)
IMAGES = ("seed", "slim", "distroless", "micro")
REQUEST_TIMEOUT = 5.0
PATH = "/hello/rollout"


@dataclass(frozen=True)
class Plan:
    replicas: int
    rollouts: int
    clients: int  # client threads per balancer
    settle_seconds: float  # load before the update starts and after it ends
    ungated: bool = False  # one more update with the health check switched off: what the gate costs and buys


PLANS = {"quick": Plan(replicas=2, rollouts=1, clients=4, settle_seconds=1.0),
         "full": Plan(replicas=3, rollouts=3, clients=4, settle_seconds=2.0, ungated=True)}


# ---- the client ---------------------------------------------------------------------------------------

def failure_kind(error: Exception) -> str:
    """The kind of a failed request, as a user's client would see it."""
    if isinstance(error, ConnectionRefusedError):
        return "refused"
    if isinstance(error, TimeoutError):
        return "timeout"
    if isinstance(error, ConnectionError):  # reset, broken pipe, closed before an answer
        return "reset"
    if isinstance(error, http.client.HTTPException):
        return "bad response"
    return type(error).__name__


@dataclass
class Tally:
    sent: int = 0
    ok: int = 0
    failed: Counter = field(default_factory=Counter)

    def add(self, other: "Tally") -> None:
        self.sent += other.sent
        self.ok += other.ok
        self.failed.update(other.failed)

    def as_dict(self) -> dict:
        return {"sent": self.sent, "ok": self.ok, "failed": sum(self.failed.values()),
                "failed_by_kind": dict(sorted(self.failed.items()))}


def request_once(connection: http.client.HTTPConnection, tally: Tally) -> bool:
    """One GET on a kept-alive connection; True when the connection can be used again."""
    tally.sent += 1
    try:
        connection.request("GET", PATH)
        response = connection.getresponse()
        response.read()
    except (OSError, http.client.HTTPException) as error:
        tally.failed[failure_kind(error)] += 1
        return False
    if 200 <= response.status < 300:
        tally.ok += 1
    else:
        tally.failed[f"http {response.status}"] += 1
    return not response.will_close


def client(port: int, stop: threading.Event, tally: Tally) -> None:
    """Requests back to back until stop is set; a failed connection is replaced, as a client library does."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    while not stop.is_set():
        if not request_once(connection, tally):
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    connection.close()


@contextmanager
def load(ports: dict[str, int], clients: int, limit_seconds: float) -> Iterator[dict[str, Tally]]:
    """`clients` threads per port, sending until the block ends (or limit_seconds pass); yields the tallies,
    complete once the block has ended."""
    stop, tallies, threads = threading.Event(), {}, []
    for label, port in ports.items():
        tallies[label] = [Tally() for _ in range(clients)]
        threads += [threading.Thread(target=client, args=(port, stop, t), daemon=True) for t in tallies[label]]
    totals = {label: Tally() for label in ports}
    timer = threading.Timer(limit_seconds, stop.set)
    timer.start()
    for thread in threads:
        thread.start()
    try:
        yield totals
    finally:
        stop.set()
        timer.cancel()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT + 5)
        for label, parts in tallies.items():
            for part in parts:
                totals[label].add(part)


def rollout_under_load(ports: dict[str, int], service: str, plan: Plan, *options: str) -> dict:
    """One rolling update (`docker service update --force OPTIONS`) while `plan.clients` clients per
    balancer send requests; tallies per balancer."""
    with load(ports, plan.clients, limit_seconds=660) as tallies:
        time.sleep(plan.settle_seconds)
        update = roll(service, *options)
        time.sleep(plan.settle_seconds)
    return {"update": update, **{config: tally.as_dict() for config, tally in tallies.items()}}


def has_healthcheck(tag: str) -> bool:
    return docker("image", "inspect", "--format", "{{if .Config.Healthcheck}}yes{{end}}", tag,
                  quiet=True).stdout.strip() == "yes"


def described(label: str, run: dict) -> str:
    return (f"{label}: {run['update']['seconds']:.1f}s; " +
            ", ".join(f"{c} {run[c]['failed']} failed of {run[c]['sent']}" for c in CONFIGS if c in run))


def study_image(variant: str, plan: Plan) -> dict:
    stack, tag = f"{PREFIX}-{variant}", VARIANTS[variant].tag
    progress(f"rollout: {tag}, {plan.replicas} replicas, {plan.rollouts} rolling update(s), "
             f"{plan.clients} clients per balancer")
    result = {}
    with deployed_stack(stack, variant, plan.replicas) as ports:
        runs = []
        for number in range(plan.rollouts):
            runs.append(rollout_under_load(ports, f"{stack}_api", plan))
            progress(described(f"rollout {variant} {number + 1}/{plan.rollouts}", runs[-1]))
        if plan.ungated and has_healthcheck(tag):
            # Last, since it leaves the service without its health check.
            result["without_health_gate"] = rollout_under_load(ports, f"{stack}_api", plan, "--no-healthcheck")
            progress(described(f"rollout {variant} without its health check", result["without_health_gate"]))
    return {"runs": runs, "rollout_seconds": summary([r["update"]["seconds"] for r in runs]),
            **{config: totals(runs, config) for config in ports}, **result}


def totals(runs: list[dict], config: str) -> dict:
    total = Tally()
    for run in runs:
        total.sent += run[config]["sent"]
        total.ok += run[config]["ok"]
        total.failed.update(run[config]["failed_by_kind"])
    return total.as_dict()


def compose_recreate(plan: Plan) -> dict:
    """`docker compose up -d --force-recreate` of the one container under the same client load."""
    project = f"{PREFIX}-compose"
    progress("compose: one container recreated under load")
    with compose_project(project) as port, load({"compose": port}, plan.clients, limit_seconds=300) as tallies:
        time.sleep(plan.settle_seconds)
        started = time.perf_counter()
        seconds = compose(project, "up", "-d", "--force-recreate")
        must_answer(port, "the recreated container")
        answering_again = time.perf_counter() - started
        time.sleep(plan.settle_seconds)
    return {"recreate_seconds": seconds, "answering_again_seconds": answering_again, "clients": plan.clients,
            **tallies["compose"].as_dict()}


# ---- the study ----------------------------------------------------------------------------------------

def available_images() -> list[str]:
    """The study's images that are built (micro only where this checkout defines it); the others must be."""
    missing = [VARIANTS[n].tag for n in ("seed", "slim", "distroless", "lb") if not image_exists(VARIANTS[n].tag)]
    if missing:
        raise RuntimeError(f"not built: {', '.join(missing)}: run python -m bench rollout (it builds them)")
    return [name for name in IMAGES if name in VARIANTS and image_exists(VARIANTS[name].tag)]


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="2 replicas and one update per image instead of 3 and 3")


def run(options: argparse.Namespace) -> dict:
    options.builder.build_all(("seed", *DEPLOY_IMAGES))  # seed: the tutorial's image, rolled as the baseline
    plan = options.plan
    results = {**run_results.header("quick" if options.quick else "full", options.command_line, plan),
               "request": f"GET {PATH}", "request_timeout_seconds": REQUEST_TIMEOUT, "images": {}}
    results["cpus"], results["docker"] = results["machine"]["cpus"], results["machine"]["docker_server"]
    names = available_images()
    quietness = Quietness()
    with swarm_mode():
        for name in names:
            with quietness.around(f"rollout: {name}"):
                results["images"][name] = study_image(name, plan)
    results["compose"] = compose_recreate(plan)
    results["noise"] = quietness.summary()
    return run_results.finish(results)


def failures(results: dict) -> list[str]:
    """The guarantee: every image but the tutorial's kept every request through both balancers in every gated
    rolling update, and every update completed and replaced every replica. (The ungated update is an
    experiment, and one Compose container cannot be recreated without a gap: neither is a guarantee.)"""
    problems = []
    for name, result in results["images"].items():
        for number, run in enumerate(result["runs"], 1):
            if run["update"]["update_state"] != "completed" or not run["update"]["all_replaced"]:
                problems.append(f"{name}: rolling update {number} did not complete and replace every replica: "
                                f"{run['update']}")
            for config in (c for c in CONFIGS if c in run and name != "seed"):
                if run[config]["failed"]:
                    problems.append(f"{name}: rolling update {number} lost {run[config]['failed']} of "
                                    f"{run[config]['sent']} requests through the {config} balancer: "
                                    f"{run[config]['failed_by_kind']}")
    return problems


# ---- report -------------------------------------------------------------------------------------------

CONFIG_TITLES = {"retrying": "HAProxy retries and redispatches (the stack)",
                 "no_retry": "HAProxy does not retry (like kube-proxy)"}


def kinds(result: dict) -> str:
    return ", ".join(f"{kind}: {count:,}" for kind, count in result["failed_by_kind"].items()) or "–"


def failed_cell(result: dict) -> str:
    cell = f"{result['failed']:,} failed of {result['sent']:,}"
    return f"**{cell}**" if result["failed"] else cell


def markdown(results: dict) -> str:
    images, plan = results["images"], results["plan"]
    configs = [c for c in CONFIGS if all(c in r for r in images.values())]
    summary_rows = [[f"`{name}`", *(failed_cell(r[c]) for c in configs),
                     f"{r['rollout_seconds']['median']:.1f} s"] for name, r in images.items()]
    kind_rows = [[f"`{name}`", CONFIG_TITLES[c], f"{r[c]['ok']:,}", kinds(r[c])]
                 for name, r in images.items() for c in configs]
    run_rows = [[f"`{name}`", str(i + 1), f"{run['update']['seconds']:.1f} s", run["update"]["update_state"],
                 f"{run['update']['replicas_replaced']}/{run['update']['replicas']}",
                 *(f"{run[c]['failed']} / {run[c]['sent']:,}" for c in configs)]
                for name, r in images.items() for i, run in enumerate(r["runs"])]
    ungated_rows = [[f"`{name}`", f"{r['rollout_seconds']['median']:.1f} s",
                     f"{r['without_health_gate']['update']['seconds']:.1f} s",
                     *(failed_cell(r["without_health_gate"][c]) for c in configs)]
                    for name, r in images.items() if "without_health_gate" in r]
    c = results["compose"]
    return f"""# Rolling updates: {results['mode']} run, {results['date']}

Docker {results['docker']}, {results['cpus']} CPUs. For each image, `docker stack deploy -c deploy/swarm/stack.yaml
-c deploy/swarm/no-retry.yaml` with {plan['replicas']} replicas (`endpoint_mode: dnsrr`, `order: start-first`), then
{plan['rollouts']} × `docker service update --force --detach=false STACK_api` while {plan['clients']} client threads per
balancer send `{results['request']}` back to back on kept-alive connections (timeout
{results['request_timeout_seconds']:.0f} s), from {plan['settle_seconds']:.0f} s before each update to
{plan['settle_seconds']:.0f} s after it. Both balancers stand in front of the same replicas during the same update.
{describe(results.get('noise'))}
Rollout: wall time of the update command, median of the runs.

{table(["image", *(CONFIG_TITLES[c] for c in configs), "rollout"], summary_rows)}

![failed requests and rollout time](rollout.svg)

## Failures by kind

*refused*: connection refused; *reset*: connection closed or reset before an answer; *timeout*: no answer
within the client's timeout; *http NNN*: the balancer's (or the app's) error status.

{table(["image", "balancer", "2xx", "failed, by kind"], kind_rows)}

## Every rolling update

{table(["image", "run", "rollout", "update state", "replaced", *(f"{c}: failed / sent" for c in configs)],
       run_rows)}

{ungated_section(ungated_rows, configs)}## One host: `docker compose up -d --force-recreate`

compose.yaml (one distroless container) under {c['clients']} client threads sending to its published port: the
command took {c['recreate_seconds']:.1f} s, and `/health` answered again {c['answering_again_seconds']:.1f} s after it
started; {failed_cell(c)} requests ({kinds(c)}). With one container nobody takes over while it is
replaced: for updates without failures, run replicas behind a balancer (deploy/swarm/).

Raw figures: [rollout.json](rollout.json). Re-render: `python -m bench report DIR`.
"""


def ungated_section(rows: list[list[str]], configs: list[str]) -> str:
    if not rows:
        return ""
    header = ["image", "rollout, gated (median)", "rollout without the gate",
              *(f"without the gate: {CONFIG_TITLES[c]}" for c in configs)]
    return f"""## What the health-check gate costs and buys

For each image that has a health check, one more update after the others with it switched off
(`docker service update --force --no-healthcheck`): swarm then starts the next replica as soon as the new
container runs, as it does for `seed`, which has none.

{table(header, rows)}

"""


def svg_chart(results: dict) -> str:
    """Failed requests per image and balancer (bars, labelled with counts), and median rollout seconds."""
    images = results["images"]
    configs = [c for c in CONFIGS if all(c in r for r in images.values())]
    colours = {"retrying": "#2980b9", "no_retry": "#c0392b"}
    left, row, bar_height, panel = 110, 20 * len(configs) + 12, 18, 300
    height = 50 + row * len(images) + 30
    most_failed = max([1, *(r[c]["failed"] for r in images.values() for c in configs)])
    longest = max([1.0, *(r["rollout_seconds"]["median"] for r in images.values())])
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + 2 * panel + 120}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{left + 2 * panel + 120}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="20" font-size="14" font-weight="bold">Failed requests during the rollout</text>',
             f'<text x="{left + panel + 60}" y="20" font-size="14" font-weight="bold">Rollout (s, median)</text>']
    for i, (name, result) in enumerate(images.items()):
        y = 40 + i * row
        parts.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{name}</text>')
        for j, config in enumerate(configs):
            failed = result[config]["failed"]
            width = (panel - 60) * failed / most_failed
            parts.append(f'<rect x="{left}" y="{y + j * 20}" width="{width:.1f}" height="{bar_height}" '
                         f'fill="{colours[config]}"/>')
            parts.append(f'<text x="{left + width + 4:.1f}" y="{y + j * 20 + 13}">{failed:,} ({config})</text>')
        seconds = result["rollout_seconds"]["median"]
        width = (panel - 60) * seconds / longest
        parts.append(f'<rect x="{left + panel + 60}" y="{y}" width="{width:.1f}" height="{bar_height}" fill="#555"/>')
        parts.append(f'<text x="{left + panel + 64 + width:.1f}" y="{y + 13}">{seconds:.1f}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def render(results: dict) -> dict[str, str]:
    return {"rollout.md": markdown(results), "rollout.svg": svg_chart(results)}


def shape(results: dict) -> list[str]:
    return [] if results["images"] and "compose" in results else ["no image or no compose result"]


STUDY = run_results.Study(
    name="rollout", summary="rolling updates of the swarm stack under load, per image and balancer; compose "
                            "--force-recreate (minutes)",
    files=("rollout.json", "rollout.md", "rollout.svg"), add_options=add_options, run=run, render=render,
    guarantees=failures, shape=shape, plans=PLANS, builds=True)
