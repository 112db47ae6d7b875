"""`python -m bench profile [REV...]`: where the service's time goes under load, by a sampling profiler.

Each revision's `service/` (HEAD by default; see bench/revisions.py) and plain waitress are served on
loopback in turn and loaded with wrk while py-spy samples every thread twice: `--gil`, which keeps only
the thread holding the GIL (where the CPU work is), and `--idle`, which keeps every thread (where threads
wait). The report gives each thread group's share of the samples and the functions they were in.
"""

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from images.docker import progress

from .. import results as run_results
from ..control import THREADS, host_server
from ..load import CONNECTIONS
from ..render import table
from ..revisions import described, source_tree

SECONDS = 8
RATE = 250  # samples a second
TOP = 12
PLAIN = "plain waitress"


def py_spy() -> str:
    # Beside the interpreter first: the test extra installs it into the project's .venv.
    found = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if found is None:
        raise RuntimeError("py-spy is not installed: pip install -e '.[test]' (it comes with the test extra)")
    return found


def thread_group(frame: str) -> str:
    return "event loop (main thread)" if "MainThread" in frame else "worker threads"


def summarise(raw: str) -> dict:
    """From py-spy's raw output (`stack;frames count` lines): samples per thread group, and per group the
    functions samples were in (self) and under (inclusive), as shares of all samples."""
    total, groups = 0, collections.Counter()
    own: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    under: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        group, names = thread_group(frames[0]), [f.split(" (")[0] for f in frames[1:]]
        total += int(count)
        groups[group] += int(count)
        if names:
            own[group][names[-1]] += int(count)
            for name in set(names):
                under[group][name] += int(count)
    share = lambda n: round(n / total, 4) if total else 0.0  # noqa: E731
    return {"samples": total, "groups": {g: share(n) for g, n in groups.most_common()},
            "self": {g: {f: share(n) for f, n in c.most_common(TOP)} for g, c in own.items()},
            "inclusive": {g: {f: share(n) for f, n in c.most_common(TOP)} for g, c in under.items()}}


def record(pid: int, mode: str, seconds: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        command = [py_spy(), "record", "--threads", f"--{mode}", "-r", str(RATE), "-f", "raw", "-d", str(seconds),
                   "-p", str(pid), "-o", out.name]
        progress("$ " + " ".join(command))
        subprocess.run(command, check=True, capture_output=True, timeout=seconds + 60)
        return summarise(Path(out.name).read_text())


def profile_server(label: str, tree: Path | None, seconds: int) -> dict:
    """`tree`: a revision's source tree to serve; None: plain waitress."""
    server = host_server("service", THREADS, tree) if tree else host_server("plain", THREADS)
    with server as (host, port, pid):
        result = {}
        for mode in ("gil", "idle"):
            load = subprocess.Popen(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{seconds + 3}s",
                                     f"http://{host}:{port}/hello/profile"], stdout=subprocess.PIPE, text=True)
            time.sleep(1)
            result[mode] = record(pid, mode, seconds)
            output, _ = load.communicate(timeout=seconds + 30)
            result[f"{mode}_wrk"] = output.split("Requests/sec:")[-1].split()[0] if "Requests/sec:" in output else "?"
        progress(f"profiled {label}")
        return result


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("revisions", nargs="*", default=["HEAD"], help="git revisions (default HEAD)")
    parser.add_argument("--seconds", type=int, default=SECONDS, help=f"per recording (default {SECONDS})")


def run(options: argparse.Namespace) -> dict:
    revisions, seconds = options.revisions, options.seconds
    results = {**run_results.header("full", options.command_line), "seconds": seconds, "rate": RATE,
               "threads": THREADS, "connections": CONNECTIONS, "servers": {}, "revisions": {}}
    with tempfile.TemporaryDirectory(prefix="hello-api-profile-") as work:
        for revision in revisions:
            tree = source_tree(revision, Path(work))
            results["revisions"][revision] = described(revision)
            results["servers"][revision] = profile_server(revision, tree, seconds)
        results["servers"][PLAIN] = profile_server(PLAIN, None, seconds)
    return run_results.finish(results)


def markdown(results: dict) -> str:
    parts = [f"""# Where the time goes: py-spy under load

`{results['command']}`: each server on loopback ({results['threads']} threads, APP_LOG_LEVEL=WARNING for the
service), `wrk -t2 -c{results['connections']}` running, py-spy sampling every thread at {results['rate']} Hz
for {results['seconds']} s, once with `--gil` (only the thread holding the GIL: the CPU work) and once
with `--idle` (every thread, waiting included). Shares are of all samples in that recording.
"""]
    for label, server in results["servers"].items():
        title = results["revisions"].get(label, "the control: waitress.serve(create_app(...), threads=8)")
        parts.append(f"## `{label}`: {title}\n\nreq/s under the two recordings: {server['gil_wrk']}, "
                     f"{server['idle_wrk']}.\n")
        for mode, what in (("gil", "holding the GIL"), ("idle", "every thread")):
            summary = server[mode]
            groups = ", ".join(f"{g} {s:.0%}" for g, s in summary["groups"].items())
            parts.append(f"`--{mode}` ({what}, {summary['samples']} samples): {groups}.\n")
            rows = [[group, f"`{name}`", f"{share:.1%}"] for group, functions in summary["self"].items()
                    for name, share in list(functions.items())[:6]]
            parts.append(table(["thread", "function (self)", "share"], rows) + "\n")
            rows = [[group, f"`{name}`", f"{share:.1%}"] for group, functions in summary["inclusive"].items()
                    for name, share in list(functions.items())[:TOP]]
            parts.append("<details><summary>inclusive</summary>\n\n" + table(["thread", "function (and below)",
                                                                              "share"], rows) + "\n\n</details>\n")
    return "\n".join(parts)


STUDY = run_results.Study(
    name="profile", summary="py-spy of the service at revisions (default HEAD) and of plain waitress under wrk "
                            "load, on loopback (a minute)",
    files=("profile.json", "profile.md"), add_options=add_options, run=run,
    render=run_results.markdown_file("profile.md", markdown))
