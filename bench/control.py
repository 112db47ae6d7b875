"""What the hardening costs: the service against plain waitress serving the same app with the same threads.

The control of every study run. Both servers run at once, idle but for the load; wrk measures them in
alternating rounds (the order swapped each round), so whatever the machine does meanwhile hits both, and
the per-round ratio is what the report and `bench check` read. Routes: host processes on loopback (8
threads, and 1 thread, where waitress's hand-off between its event loop and a worker thread shows most),
and the slim image straight to the container's bridge address (no port proxy). Neither side writes an
access log here (APP_LOG_LEVEL=WARNING), so only the transport differs.
"""

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from images.docker import ROOT, docker, progress

from .containers import CONTAINER_PORT, answers, container_ip, free_port, remove
from .load import CONNECTIONS, summary, wrk
from .noise import Quietness

THREADS = 8
FLOOR = 0.8  # `bench check` fails a run whose service served less than this share of plain waitress's
SIDES = ("service", "plain")
QUIET = {"APP_LOG_LEVEL": "WARNING"}


def plain_waitress_code(listen: str, threads: int) -> str:
    return ("import waitress; from service.app import create_app; "
            f"waitress.serve(create_app('production'), listen='{listen}', threads={threads}, ident='')")


@dataclass(frozen=True)
class Route:
    name: str
    threads: int
    container: bool  # False: host processes on loopback

    def start(self, side: str, stack: ExitStack, tag: str) -> "Listening":
        """Start one side's server, stopped when `stack` closes."""
        if self.container:
            return stack.enter_context(container_server(tag, side, self.threads))
        return stack.enter_context(host_server(side, self.threads))


ROUTES = (Route("loopback, 8 threads", THREADS, False), Route("loopback, 1 thread", 1, False),
          Route("slim, straight to the container", THREADS, True))


class Listening(NamedTuple):
    """Where a started server answers; `pid` for host processes (a profiler attaches to it)."""
    host: str
    port: int
    pid: int | None = None


@contextmanager
def host_server(side: str, threads: int, tree: Path = ROOT) -> Iterator[Listening]:
    """`side` "service" (`python -m service` from `tree`, the checkout by default) or "plain" (waitress)."""
    port = free_port()
    if side == "service":
        command = [sys.executable, "-m", "service"]
    else:
        command = [sys.executable, "-c", plain_waitress_code(f"127.0.0.1:{port}", threads)]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree), "APP_HOST": "127.0.0.1", "APP_PORT": str(port),
           "APP_THREADS": str(threads), **QUIET}
    progress(f"$ {' '.join(command[:2])}{' ...' if side == 'plain' else ''} (port {port}, {threads} threads)")
    process = subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not answers(port):
            raise RuntimeError(f"the {side} server on port {port} never answered /health")
        yield Listening("127.0.0.1", port, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def container_server(tag: str, side: str, threads: int) -> Iterator[Listening]:
    name = f"hello-api-control-{side}-{free_port()}"
    env = [f"-e{k}={v}" for k, v in {**QUIET, "APP_THREADS": str(threads)}.items()]
    if side == "service":
        docker("run", "-d", "--name", name, *env, tag, quiet=False)
    else:
        docker("run", "-d", "--name", name, "--entrypoint", "python3", tag, "-c",
               plain_waitress_code(f"0.0.0.0:{CONTAINER_PORT}", threads))
    try:
        address = container_ip(name)
        if not answers(CONTAINER_PORT, host=address):
            raise RuntimeError(f"{tag} ({side}) never answered /health at {address}")
        yield Listening(address, CONTAINER_PORT)
    finally:
        remove(name)


def compare_route(route: Route, tag: str, rounds: int, seconds: int, quietness: Quietness) -> dict:
    samples: dict[str, list[dict]] = {side: [] for side in SIDES}
    with ExitStack() as stack:
        servers = {side: route.start(side, stack, tag) for side in SIDES}
        for server in servers.values():
            wrk(server.port, 1, CONNECTIONS, host=server.host)  # warm-up, discarded
        with quietness.around(f"control: {route.name}"):
            for number in range(rounds):
                for side in (SIDES if number % 2 == 0 else SIDES[::-1]):
                    samples[side].append(wrk(servers[side].port, seconds, CONNECTIONS, host=servers[side].host))
                progress(f"control {route.name}, round {number + 1}/{rounds}: service "
                         f"{samples['service'][-1]['requests_per_second']:,.0f} req/s, plain waitress "
                         f"{samples['plain'][-1]['requests_per_second']:,.0f}")
    return service_against_plain(route, samples, seconds)


def service_against_plain(route: Route, samples: dict[str, list[dict]], seconds: int) -> dict:
    """Each side's throughput and p99 over the rounds, and the service's ratio to plain waitress round by round."""
    rps = {side: [s["requests_per_second"] for s in samples[side]] for side in SIDES}
    p99 = {side: [s["p99_seconds"] for s in samples[side]] for side in SIDES}
    return {
        "threads": route.threads, "container": route.container, "seconds": seconds, "connections": CONNECTIONS,
        "requests_per_second": {side: summary(rps[side]) for side in SIDES},
        "p99_seconds": {side: summary(p99[side]) for side in SIDES},
        "ratio": summary([a / b for a, b in zip(rps["service"], rps["plain"], strict=True)]),
        "p99_ratio": summary([a / b for a, b in zip(p99["service"], p99["plain"], strict=True)]),
        "errors": sum(s["socket_errors"] + s["non_2xx"] for side in SIDES for s in samples[side]),
    }


def hardening_cost_study(tag: str, rounds: int, seconds: int, quietness: Quietness,
                         routes: tuple[Route, ...] = ROUTES) -> dict:
    progress(f"control: the service against plain waitress ({plain_waitress_code('ADDRESS', THREADS)}), "
             f"{rounds} alternating rounds of {seconds} s per route")
    return {route.name: compare_route(route, tag, rounds, seconds, quietness) for route in routes}


def failures(cost: dict | None) -> list[str]:
    """The guarantee: on every route the service serves at least FLOOR of what plain waitress serves."""
    problems = []
    for name, route in (cost or {}).items():
        median = route["ratio"]["median"]
        if median < FLOOR:
            problems.append(f"hardening cost, {name}: the service served {median:.2f}× what plain waitress served "
                            f"in the same run (floor {FLOOR}×): a slowdown of the transport; profile it "
                            "(py-spy record --threads --idle) against the commit before")
    return problems


def row_cells(route: dict) -> list[str]:
    rps, p99 = route["requests_per_second"], route["p99_seconds"]
    ratio, p99_ratio = route["ratio"], route["p99_ratio"]
    return [f"{rps['service']['median']:,.0f} ({rps['service']['min']:,.0f}–{rps['service']['max']:,.0f})",
            f"{rps['plain']['median']:,.0f} ({rps['plain']['min']:,.0f}–{rps['plain']['max']:,.0f})",
            f"**{ratio['median']:.2f}×** ({ratio['min']:.2f}–{ratio['max']:.2f})",
            f"{p99['service']['median'] * 1000:.1f} / {p99['plain']['median'] * 1000:.1f} ms",
            f"{p99_ratio['median']:.2f}× ({p99_ratio['min']:.2f}–{p99_ratio['max']:.2f})"]


def statistics_note(cost: dict) -> str:
    rounds = {route["ratio"]["runs"] for route in cost.values()}
    seconds = {route["seconds"] for route in cost.values()}
    return (f"{'/'.join(map(str, sorted(rounds)))} alternating rounds of `wrk --latency -t2 -c{CONNECTIONS} "
            f"-d{'/'.join(map(str, sorted(seconds)))}s` per route; median (min–max); ratios per round, "
            f"service ÷ plain. `bench check` fails a run whose median ratio on any route is under {FLOOR}×.")

