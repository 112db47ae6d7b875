"""The image study: for each image, size, build cache, start-up, stop, memory and throughput, side by side.

The same machinery measures the project's own variants (`python -m bench study`, a fixed list) and any
images a user names (`python -m bench compare`). An image that cannot be measured in some respect (it
exits at once, never answers, has no shell or Python inside, answers only errors) gets a line saying what
was and was not measured, and the other images are still measured.
"""

import datetime
import re
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from images.content import image_content
from images.docker import (
    DockerError,
    docker,
    docker_command,
    engine_architecture,
    exported,
    image_exists,
    inspect_image,
    progress,
)
from images.variants import Builder, Variant

from .containers import (
    CONTAINER_PORT,
    READY_PATH,
    READY_SECONDS,
    NotReady,
    answers,
    cpu_ns,
    engine_address,
    get_status,
    host_port,
    memory_kib,
    publish,
    remove,
    rss_kib,
    running,
    stop,
    unique_name,
)
from .load import summarise_wrk_runs, summary, with_cpu, wrk
from .noise import Quietness
from .openloop import open_loop

NOOP = "noop"  # the floor for start-up: a container that starts and does nothing
OPEN_LOOP_SHARES = (0.25, 0.50, 0.75)  # of the baseline's closed-loop throughput


@dataclass(frozen=True)
class Subject:
    """One image to measure: its label in the report, its tag, and how to talk to it."""
    label: str
    tag: str
    note: str = ""
    variant: Variant | None = None  # built by the bench: then its build cache is measured too
    edits: tuple[str | None, str | None] = (None, None)  # (dependency file, code file) in the build context
    port: int = CONTAINER_PORT
    ready: str = READY_PATH
    url: str = "/hello/bench"
    env: tuple[str, ...] = ()  # KEY=VALUE, passed as -e to every container of this image
    ready_seconds: float = READY_SECONDS

    def run_options(self) -> list[str]:
        return [f"-e{pair}" for pair in self.env]


@dataclass(frozen=True)
class Plan:
    quick: bool
    startup_runs: int
    stop_runs: int
    load_seconds: int
    load_runs: int
    control_rounds: int  # `study`'s control: alternating rounds of the service against plain waitress
    control_seconds: int
    open_loop_seconds: int  # 0: no open-loop rates (`study`: `bench latency` has them)
    connections: int = 16


def plan_with_runs(plan: Plan, runs: int | None) -> Plan:
    """--runs: the start-up rounds, at least 3 (a median of fewer says little)."""
    if runs is None:
        return plan
    if runs < 3:
        raise SystemExit("bench: error: --runs must be at least 3: a median of fewer runs says little")
    return replace(plan, startup_runs=runs)


MEASURED_FAILURES = (DockerError, RuntimeError, OSError, subprocess.TimeoutExpired, ValueError)


def attempt(entry: dict, what: str, measure: Callable[[], object]) -> object | None:
    """measure(), or None with a line in entry["problems"] (and on stderr) saying what could not be measured."""
    try:
        return measure()
    except MEASURED_FAILURES as failure:
        said = str(failure)
        line = f"{what}: not measured: {said if len(said) <= 800 else '…' + said[-800:]}"
        entry["problems"].append(line)
        progress(f"{entry['tag']}: {line}")
        return None


# ---- size -------------------------------------------------------------------------------------------

KINDS = ("interpreter", "shared libraries", "stdlib bytecode", "stdlib source", "dependencies", "service", "other")
PYTHON_LIBRARY = re.compile(r"usr/(local/)?lib/python3\.\d+/")
INTERPRETER = re.compile(r"usr/(local/)?bin/python3\.\d+|.*/libpython3\.\d+\.so[.\d]*")
SHARED_LIBRARY = re.compile(r".*\.so(\.\d+)*")


def kind_of(path: str) -> str:
    """Which of KINDS a file in an image is, by where it lies: the same rules for every image (`/app/deps`
    and the rest of `/app` are this project's layout; another image's files there count the same way)."""
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
        "package_manager": present("usr/bin/apt", "usr/bin/apt-get", "usr/bin/dpkg", "sbin/apk"),
        "pip": any(n.endswith(("/pip", "/pip3")) and "/bin/" in n for n in names),
    }


def python_version(tag: str) -> str | None:
    """The image's `python3` version, None when it has none. sys, not platform: the micro image keeps only
    the modules the service imports."""
    found = docker("run", "--rm", "--entrypoint", "python3", tag, "-c",
                   "import sys; print('.'.join(map(str, sys.version_info[:3])))", check=False)
    return found.stdout.strip() if found.returncode == 0 else None


def size_study(tag: str) -> dict:
    """Sizes and layers from the image's own content (images/content.py: the same on every image store), the
    rest from its exported file system."""
    content = image_content(tag)
    return {
        "uncompressed_bytes": content.file_bytes,
        "healthcheck": bool(content.config.get("config", {}).get("Healthcheck")),
        "compressed_bytes": content.gzip_bytes,
        "layers": [{"bytes": size, "created_by": created[:160]} for size, created in content.steps()],
        "python": python_version(tag),
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
    installs = ("pip install", "pip3 install", "uv pip", "uv sync", "poetry install", "pipenv install")
    return {"steps": len(titles), "cached": len(cached & set(titles)), "reran": reran,
            "dependency_step_reran": any(word in title for title in reran for word in installs)}


TOP_LEVEL_LEFT_OUT = {".git", ".venv", ".pytest_cache", ".hypothesis"}  # never in an image; slow to copy


def left_out_of_copy(root: Path) -> Callable[[str, list[str]], set[str]]:
    """What the build-cache study's copy of a context leaves out: `__pycache__` anywhere, and at the top
    level only, git's and the virtual environment's folders and the test caches."""
    def ignored(folder: str, names: list[str]) -> set[str]:
        top = {name for name in names if name in TOP_LEVEL_LEFT_OUT} if Path(folder) == root else set()
        return top | {name for name in names if name == "__pycache__"}
    return ignored


def cache_study(variant: Variant, builder: Builder, dependency_file: str | None, code_file: str | None) -> dict:
    """Cold, no-change, code-edit and dependency-edit builds of a temporary copy of the context. An edit
    appends a comment line to the file; an edit whose file is None is left out."""
    results = {"edited_files": {"code": code_file, "dependency": dependency_file}}
    with tempfile.TemporaryDirectory(prefix="hello-api-cache-") as work:
        context = Path(work) / "context"
        shutil.copytree(variant.context, context, symlinks=True, ignore=left_out_of_copy(variant.context))
        dockerfile = variant.dockerfile
        if dockerfile.is_relative_to(variant.context):  # build the copy's Dockerfile, as a user would
            dockerfile = context / dockerfile.relative_to(variant.context)
        copy = replace(variant, tag=f"hello-api-cache-study:{uuid.uuid4().hex[:8]}", context=context,
                       dockerfile=dockerfile)
        edits = {"cold": (None, ["--no-cache"]), "no_change": (None, []), "code_edit": (code_file, []),
                 "dependency_edit": (dependency_file, [])}
        try:
            for label, (edited, extra) in edits.items():
                if label.endswith("_edit") and edited is None:
                    continue
                if edited:
                    with (context / edited).open("a") as file:
                        file.write(f"\n# edited by the bench {uuid.uuid4().hex}\n")
                seconds, output = builder.build(copy, extra=extra)
                results[label] = {"seconds": seconds, **step_counts(output)}
                progress(f"{variant.name} {label}: {seconds:.1f}s, "
                         f"{results[label]['cached']}/{results[label]['steps']} steps cached")
        finally:
            docker("rmi", "-f", copy.tag, check=False, quiet=True)
    cold = results["cold"]["seconds"]
    results["code_edit_share_of_cold"] = results["code_edit"]["seconds"] / cold if "code_edit" in results else None
    return results


# ---- start-up ---------------------------------------------------------------------------------------

def timed_start(subject: Subject | None, run_args: list[str], container_port: int) -> float:
    """Seconds from `docker run -d` to its return (subject None: the noop) or to the first 2xx on its
    ready path."""
    name, port = unique_name(), host_port()
    command = [*docker_command(), "run", "-d", *publish(name, port, container_port), *run_args]
    started = time.perf_counter()
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        if subject is not None and not answers(port, subject.ready, engine_address(), subject.ready_seconds):
            raise NotReady(f"{subject.tag} did not answer GET {subject.ready} with a 2xx within "
                           f"{subject.ready_seconds:g} s in a timed start")
        return time.perf_counter() - started
    finally:
        remove(name)


def startup_study(subjects: list[Subject], noop: list[str], runs: int, entries: dict[str, dict]) -> dict:
    """Interleaved rounds (every image and the noop once per round), so drift hits all alike. An image
    whose start fails once is left out of the later rounds."""
    progress(f"start-up: {runs} rounds of: docker run -d -p 127.0.0.1:PORT:CONTAINER_PORT IMAGE, then GET its "
             f"ready path until 2xx; noop: docker run -d ... {' '.join(noop)}")
    samples: dict[str, list[float]] = {subject.label: [] for subject in subjects}
    samples[NOOP] = []
    live = list(subjects)
    if live:  # warm-up: the first container start after a build is slower
        attempt(entries[live[0].label], "start-up warm-up",
                lambda: timed_start(live[0], [*live[0].run_options(), live[0].tag], live[0].port))
    for number in range(runs):
        samples[NOOP].append(timed_start(None, noop, CONTAINER_PORT))
        for subject in list(live):
            seconds = attempt(entries[subject.label], "start-up",
                              lambda t=subject: timed_start(t, [*t.run_options(), t.tag], t.port))
            if seconds is None:
                live.remove(subject)
            else:
                samples[subject.label].append(seconds)
        progress(f"start-up round {number + 1}/{runs}: " +
                 ", ".join(f"{n} {s[-1] * 1000:.0f}ms" for n, s in samples.items() if s))
    return {label: summary(values) for label, values in samples.items() if values}


# ---- `study`'s start-up phases -------------------------------------------------------------------

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
    name, port = unique_name(), host_port()
    started = time.time()
    docker("run", "-d", *publish(name, port), tag, quiet=True)
    try:
        if not answers(port, host=engine_address()):
            raise NotReady(f"{tag} never answered GET /health within 30 s")
        answered = time.time()
        process_started = epoch(docker("inspect", "--format", "{{.State.StartedAt}}", name, quiet=True).stdout.strip(),
                                "%Y-%m-%dT%H:%M:%S")
        serving = SERVING_LINE.search(docker("logs", name, quiet=True).stderr)
    finally:
        remove(name)
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


# ---- stop, memory, throughput -----------------------------------------------------------------------

def started(subject: Subject):
    return running(subject.tag, *subject.run_options(), container_port=subject.port, ready=subject.ready,
                   seconds=subject.ready_seconds)


def stop_study(subject: Subject, runs: int) -> dict:
    """`docker stop` wall time (Docker's default 10 s grace) and the exit code it leaves."""
    seconds, codes = [], []
    for _ in range(runs):
        with started(subject) as ready:
            stopped = stop(ready.name)
            seconds.append(stopped.seconds)
            codes.append(stopped.exit_code)
    return {**summary(seconds), "exit_codes": codes}


class NotServed(RuntimeError):
    """The load URL answers no 2xx: throughput of error answers would mislead."""


def load_study(subject: Subject, seconds: int, connections: int, runs: int) -> dict:
    """Memory idle, then repeated wrk runs through the -p mapping, with memory sampled in the middle of each
    and the container's CPU time per answered request over each."""
    with started(subject) as ready:
        for _ in range(20):
            status = get_status(ready.port, subject.url, timeout=2, host=ready.host)
        if status is None or not 200 <= status < 300:
            raise NotServed(f"GET {subject.url} answered {status or 'nothing'}, not a 2xx: no throughput or "
                            f"loaded memory measured; pass --url with a path that answers 2xx")
        time.sleep(2)
        memory = Memory(ready.name)
        idle = memory.read()
        wrk(ready.port, 1, connections, path=subject.url, host=ready.host)  # warm-up, discarded
        attempts, under_load = [], []
        for _ in range(runs):
            attempts.append(with_cpu(lambda: wrk(ready.port, seconds, connections, path=subject.url, host=ready.host,
                                                 during=lambda: under_load.append(memory.read())),
                                     lambda: cpu_ns(ready.name)))
    return {"connections": connections, "seconds": seconds, "url": subject.url, **summarise_wrk_runs(attempts),
            **memory.figures(idle, under_load)}


def idle_memory(subject: Subject) -> dict:
    """Idle memory alone, for an image whose load URL answers no 2xx."""
    with started(subject) as ready:
        time.sleep(2)
        memory = Memory(ready.name)
        return memory.figures(memory.read())


class Memory:
    """A container's memory, sampled: its anonymous memory from the engine's stats (wherever the engine runs)
    and, where the engine runs on this machine, its first process's RSS from /proc beside it (the figure
    runs before format 4 reported). What cannot be read is None, with why."""

    def __init__(self, name: str) -> None:
        self.name, self.unreadable = name, {}

    def read(self) -> dict[str, int | None]:
        return {"memory": self.attempt("memory", memory_kib), "rss": self.attempt("rss", rss_kib)}

    def attempt(self, figure: str, reader: Callable[[str], int]) -> int | None:
        try:
            return reader(self.name)
        except RuntimeError as why:
            self.unreadable[figure] = str(why)
            return None

    def figures(self, idle: dict, under_load: list[dict] | None = None) -> dict:
        """`memory_idle_kib`, `rss_idle_kib` and, given samples under load, each one's largest; with
        `memory_problem` (the engine's figure missing) or `rss_problem` (expected away from the engine)."""
        found = {f"{figure}_idle_kib": idle[figure] for figure in ("memory", "rss")}
        if under_load is not None:
            for figure in ("memory", "rss"):
                loaded = [sample[figure] for sample in under_load if sample[figure] is not None]
                found[f"{figure}_under_load_kib"] = max(loaded) if loaded else None
        return {**found, **{f"{figure}_problem": why for figure, why in self.unreadable.items()}}


def open_loop_study(subject: Subject, rates: list[int], seconds: int) -> dict:
    """Latency at fixed request rates (bench/openloop.py), one rate after another, on one container."""
    with started(subject) as ready:
        open_loop(ready.port, rates[0], 1, path=subject.url, host=ready.host)  # warm-up
        return {str(rate): open_loop(ready.port, rate, seconds, path=subject.url, host=ready.host)
                for rate in rates}


# ---- the run ----------------------------------------------------------------------------------------

@dataclass
class Run:
    """One run of the study over a list of subjects: what `study` and `compare` share."""
    subjects: list[Subject]
    plan: Plan
    noop: list[str]  # docker run arguments of the start-up floor: an image and a command that only sleeps
    builder: Builder | None = None
    quietness: Quietness = field(default_factory=Quietness)
    entries: dict[str, dict] = field(default_factory=dict)

    def measure(self) -> dict:
        for subject in self.subjects:
            self.entries[subject.label] = {"tag": subject.tag, "note": subject.note, "problems": []}
        usable = [t for t in self.subjects if self.built(t)]
        for subject in (t for t in usable if t.variant is not None and self.builder):
            progress(f"build-cache study: {subject.label}")
            self.record(subject, "cache", "build cache",
                        lambda t=subject: cache_study(t.variant, self.builder, *t.edits))
        for subject in usable:
            progress(f"size study: {subject.label}")
            self.record(subject, "size", "size", lambda t=subject: size_study(t.tag))
        answering = [t for t in usable if self.runs_natively(t) and self.answers(t)]
        with self.quietness.around("start-up"):
            startup = startup_study(answering, self.noop, self.plan.startup_runs, self.entries)
        noop = startup.pop(NOOP)
        for label, values in startup.items():
            self.entries[label]["startup"] = values
        for subject in answering:
            progress(f"stop study: {subject.label} ({self.plan.stop_runs} run(s))")
            self.record(subject, "stop", "docker stop", lambda t=subject: stop_study(t, self.plan.stop_runs))
        for subject in answering:
            progress(f"load study: {subject.label}")
            with self.quietness.around(f"load: {subject.label}"):
                loaded = self.record(subject, "load", "throughput", lambda t=subject: load_study(
                    t, self.plan.load_seconds, self.plan.connections, self.plan.load_runs))
            if loaded is None:
                self.record(subject, "load", "idle memory", lambda t=subject: idle_memory(t))
        found = {"size_source": "layers",  # image_report.SIZE_SOURCES: read from the layers (images/content.py)
                 "noop_startup": noop, "noop_command": shlex.join(["docker", "run", "-d", "-p", "...", *self.noop]),
                 "variants": self.entries}
        loaded = [t for t in answering if "requests_per_second" in self.entries[t.label].get("load", {})]
        if self.plan.open_loop_seconds and loaded:
            found["open_loop_reference"] = self.open_loop(loaded)
        return found

    def built(self, subject: Subject) -> bool:
        entry = self.entries[subject.label]
        if subject.variant is not None and self.builder:
            progress(f"building {subject.tag} ({subject.note})")
            if attempt(entry, "build", lambda: self.builder.build(subject.variant)) is None:
                return False
        if not image_exists(subject.tag):
            entry["problems"].append(f"image: {subject.tag} does not exist here: build or pull it first "
                                     "(docker images lists what there is); nothing measured")
            progress(f"{subject.tag}: not found")
            return False
        return True

    def runs_natively(self, subject: Subject) -> bool:
        """Whether the image is for the engine's own architecture. Another runs there only under QEMU: its size is
        its own, but a timing of it says nothing of its speed where it runs natively, so none is taken."""
        architecture, engine = inspect_image(subject.tag, ".Architecture"), engine_architecture()
        if architecture == engine:
            return True
        line = (f"start-up, stop, memory and throughput: not measured: {subject.tag} is linux/{architecture}, which "
                f"this {engine} engine runs only under emulation; an emulated figure says nothing of its speed")
        self.entries[subject.label]["problems"].append(line)
        progress(f"{subject.tag}: {line}")
        return False

    def answers(self, subject: Subject) -> bool:
        """One start before the timed ones: an image that exits or never answers is measured for size only."""
        def probe() -> bool:
            with started(subject):
                return True

        if attempt(self.entries[subject.label], "start", probe) is None:
            self.entries[subject.label]["problems"].append(
                "start-up, stop, memory and throughput: not measured (it never answered)")
            return False
        return True

    def record(self, subject: Subject, key: str, what: str, measure: Callable[[], dict]) -> dict | None:
        entry = self.entries[subject.label]
        value = attempt(entry, what, measure)
        if value is not None:
            entry[key] = value
            if value.get("memory_problem"):
                entry["problems"].append(f"memory: not measured: {value['memory_problem']}")
        return value

    def open_loop(self, loaded: list[Subject]) -> str:
        """Open-loop rates at shares of the first loaded subject's closed-loop median (the baseline's, when it
        was loaded); returns that subject's label."""
        capacity = self.entries[loaded[0].label]["load"]["requests_per_second"]["median"]
        rates = [max(1, round(capacity * share)) for share in OPEN_LOOP_SHARES]
        progress(f"open loop at {rates} req/s ({', '.join(f'{s:.0%}' for s in OPEN_LOOP_SHARES)} of "
                 f"{loaded[0].label}'s closed-loop median)")
        for subject in loaded:
            with self.quietness.around(f"open loop: {subject.label}"):
                self.record(subject, "open_loop", "open-loop latency",
                            lambda t=subject: open_loop_study(t, rates, self.plan.open_loop_seconds))
        return loaded[0].label

