"""`python -m bench coldstart`: how long until a new node serves, pulling from a registry, at two link speeds.

Each image (the tutorial's, slim, distroless, micro) is copied from this engine to a registry on this machine
twice, once with gzip layers and once with zstd (skopeo, which compresses both at its default levels). Then,
for each link rate, image and compression, on a new node (bench/coldnode.py: an engine with an empty image
store, behind a link limited by tc's token bucket): `docker pull`, timed, with the bytes it moved over the
link; then `docker run` and GET /health every 5 ms until a 2xx, timed; then, the image now on the node, the
same start again (the warm start, which the image study measures against a noop container). Every
measurement has a fresh engine; rates, images and compressions alternate, round by round.
"""

import argparse
import os
import re
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from images import registry
from images.docker import progress
from images.variants import VARIANTS

from .. import coldnode
from .. import results as run_results
from ..containers import CONTAINER_PORT, READY_PATH, answers, unique_name
from ..load import summary
from ..noise import Quietness, describe, wait_until_quiet
from ..render import bar, mb, table

IMAGES = ("seed", "slim", "distroless", "micro")
RATES = ("100mbit", "1gbit")
COMPRESSIONS = {"gzip": "v2s2", "zstd": "oci"}  # compression → the manifest format that can carry it
SKOPEO_CACHE = Path("/var/lib/containers/cache/blob-info-cache-v1.boltdb")  # root's: see publish()
READY_SECONDS = 120.0


@dataclass(frozen=True)
class Plan:
    quick: bool
    rounds: int


PLANS = {"quick": Plan(True, 1), "full": Plan(False, 3)}


def require_tools() -> None:
    missing = [tool for tool in ("skopeo", "docker-registry", "tc", "ip", "nsenter", "dockerd")
               if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"bench coldstart needs {', '.join(missing)}: bash scripts/setup.sh installs them "
                         "(Debian: skopeo docker-registry iproute2 util-linux docker.io)")
    if os.geteuid() != 0:
        raise SystemExit("bench coldstart needs root: it makes a network namespace, a veth pair and a second dockerd")


def publish(tag: str, image: str, compression: str) -> dict:
    """The image copied from this engine to the link's registry with `compression` layers: its reference and
    the bytes of its manifest's layers and config, what a pull must move. Skopeo would reuse a layer it has
    already pushed in another compression (its blob cache maps layers across them), so the cache is
    removed first and each compression has a repository of its own."""
    reference = f"{coldnode.REGISTRY}/{compression}/{tag.replace(':', '-')}:latest"
    SKOPEO_CACHE.unlink(missing_ok=True)
    coldnode.run("skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--format", COMPRESSIONS[compression],
                 "--dest-compress", "--dest-compress-format", compression, f"docker-daemon:{tag}",
                 f"docker://{reference}")
    _, manifest = registry.manifest(reference)
    layers = [layer["mediaType"] for layer in manifest["layers"]]
    if not all(media_type.endswith(compression) for media_type in layers):
        raise RuntimeError(f"{reference} has layers {layers}, not {compression}")
    return {"image": image, "reference": reference, "compression": compression,
            "layer_bytes": sum(layer["size"] for layer in manifest["layers"]) + manifest["config"]["size"]}


def timed_start(engine: coldnode.Engine, reference: str) -> float:
    """`docker run` on the node's network to the first 2xx on /health, in seconds; the container removed."""
    name = unique_name("hello-api-node")
    started = time.perf_counter()
    engine.docker("run", "-d", "--network", "host", "--name", name, reference)
    try:
        if not answers(CONTAINER_PORT, READY_PATH, coldnode.NODE_ADDRESS, READY_SECONDS):
            logs = engine.docker("logs", "--tail", "5", name, check=False)
            raise RuntimeError(f"{reference} never answered GET {READY_PATH} on the node: {logs.stderr[-400:]}")
        return time.perf_counter() - started
    finally:
        engine.docker("rm", "-f", name, check=False)


def cold_start(reference: str) -> dict:
    """On a fresh engine: the pull (seconds, bytes over the link), the start after it, and a warm start."""
    with coldnode.fresh_engine() as engine:
        if engine.docker("images", "-q").stdout.strip():
            raise RuntimeError("the new node's image store is not empty")
        sent, started = coldnode.bytes_sent(), time.perf_counter()
        engine.docker("pull", "-q", reference)
        pulled, moved = time.perf_counter() - started, coldnode.bytes_sent() - sent
        start = timed_start(engine, reference)
        return {"pull_seconds": pulled, "bytes_moved": moved, "start_seconds": start,
                "total_seconds": pulled + start, "warm_start_seconds": timed_start(engine, reference)}


def refusal(reference: str) -> str | None:
    """None when a fresh node pulls `reference`, else what its engine said (Docker 20.10 downloads zstd layers,
    then fails to unpack them: "archive/tar: invalid tar header")."""
    try:
        with coldnode.fresh_engine() as engine:
            engine.docker("pull", "-q", reference)
    except RuntimeError as refused:
        return str(refused)
    return None


def measure(plan: Plan, published: dict[tuple[str, str], dict], quietness: Quietness) -> dict:
    """Every (image, compression) at every rate, round by round; one that fails (an engine that cannot unpack
    zstd layers) gets its problem in `published` and is not tried again."""
    samples: dict[tuple[str, str, str], list[dict]] = {(i, c, r): [] for i, c in published for r in RATES}
    for number in range(plan.rounds):
        forward = number % 2 == 0
        for rate in RATES if forward else RATES[::-1]:
            coldnode.limit(rate)
            with quietness.around(f"round {number + 1}, {rate}"):
                for pair in (list(published) if forward else list(published)[::-1]):
                    if {"problem", "unsupported"} & set(published[pair]):
                        continue
                    progress(f"round {number + 1}/{plan.rounds}, {rate}: {pair[0]} ({pair[1]}) on a new node")
                    try:
                        samples[(*pair, rate)].append(cold_start(published[pair]["reference"]))
                    except RuntimeError as failed:
                        published[pair]["problem"] = str(failed)
                        progress(f"{pair[0]} ({pair[1]}): not measured: {failed}")
    return samples


def summarised(runs: list[dict]) -> dict:
    return {**{key: summary([run[key] for run in runs])
               for key in ("pull_seconds", "start_seconds", "total_seconds", "warm_start_seconds")},
            "bytes_moved": statistics.median(run["bytes_moved"] for run in runs), "runs": runs}


def figures(published: dict, samples: dict[str, list[dict]]) -> dict:
    """What was published, and each rate's figures; none where it failed (its problem says why) or where the
    engine does not pull its compression (`unsupported` says what the engine said)."""
    if {"problem", "unsupported"} & set(published):
        return published
    return {**published, "rates": {rate: summarised(runs) for rate, runs in samples.items()}}


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="one round (a few minutes; for CI)")


def run(options: argparse.Namespace) -> dict:
    require_tools()
    plan = options.plan
    options.builder.build_all(IMAGES)
    quietness = Quietness()
    results = {**run_results.header("quick" if plan.quick else "full", options.command_line, plan,
                                    options.builder.describe()),
               "rates": list(RATES), "compressions": list(COMPRESSIONS), "images": {}}
    with tempfile.TemporaryDirectory(prefix="hello-api-coldstart-") as state, coldnode.link(), \
            coldnode.serving_registry(Path(state)):
        published = {(image, compression): publish(VARIANTS[image].tag, image, compression)
                     for image in IMAGES for compression in COMPRESSIONS}
        coldnode.limit(RATES[-1])
        refused = refusal(published[(IMAGES[-1], "zstd")]["reference"])
        if refused:  # not a gap in the run: a finding about the engine
            progress(f"zstd: this engine does not pull zstd layers: {refused}")
            for pair in published:
                if pair[1] == "zstd":
                    published[pair]["unsupported"] = refused
        wait_until_quiet()
        samples = measure(plan, published, quietness)
    for image in IMAGES:
        results["images"][image] = {
            "tag": VARIANTS[image].tag, "note": VARIANTS[image].note,
            "compressions": {compression: figures(published[(image, compression)],
                                                  {rate: samples[(image, compression, rate)] for rate in RATES})
                             for compression in COMPRESSIONS}}
    results["noise"] = quietness.summary()
    return run_results.finish(results)


# ---- the report ---------------------------------------------------------------------------------------------

def seconds_cell(figure: dict) -> str:
    return f"{figure['median']:.2f} s ({figure['min']:.2f}–{figure['max']:.2f})"


def rate_label(rate: str) -> str:
    bits = coldnode.rate_bits(rate)
    return f"{bits / 1e9:g} Gbit/s" if bits >= 1e9 else f"{bits / 1e6:g} Mbit/s"


def results_table(results: dict) -> str:
    header = ["image", "layers", "bytes moved"]
    for rate in results["rates"]:
        header += [f"{rate_label(rate)}: pull", "start", "**first answer**"]
    header.append("warm start")
    rows = []
    for image, entry in results["images"].items():
        for compression, published in entry["compressions"].items():
            if {"problem", "unsupported"} & set(published):
                why = ("this engine does not pull it (below)" if "unsupported" in published
                       else f"not measured: {published['problem'][-240:]}")
                rows.append([f"`{image}`", f"{compression} {mb(published['layer_bytes'])}", why]
                            + [""] * (3 * len(results["rates"])))
                continue
            figures = published["rates"]
            row = [f"`{image}`", f"{compression} {mb(published['layer_bytes'])}",
                   mb(figures[results["rates"][0]]["bytes_moved"])]
            for rate in results["rates"]:
                row += [seconds_cell(figures[rate]["pull_seconds"]), seconds_cell(figures[rate]["start_seconds"]),
                        f"**{figures[rate]['total_seconds']['median']:.2f} s**"]
            row.append(seconds_cell(figures[results["rates"][0]]["warm_start_seconds"]))
            rows.append(row)
    return table(header, rows)


def markdown(results: dict) -> str:
    m, load = results["machine"], results["load_average"]
    return f"""# Cold start: from a registry to the first answer on a new node

{results['date']}, {results['mode']} mode (`{results['command']}`), {m['cpus']} CPUs, Docker {m['docker_server']}.
Load average (1 min) at the start and end: {load['start']:.1f} and {load['end']:.1f}. {describe(results.get('noise'))}

Each image was copied from this engine to Debian's `docker-registry` on this machine with gzip and with zstd
layers (`skopeo copy --dest-compress-format`, default levels). Each figure is from a new node: a second
`dockerd` with an empty image store in a network namespace of its own, reaching the registry over a veth pair
whose registry end `tc ... tbf` limits to the rate. *Pull*: `docker pull` until it returns (download, then
unpacking the layers); *bytes moved*: what the registry sent over the link meanwhile. *Start*: `docker run
--network host` to the first 2xx on GET /health, polled every 5 ms. *First answer*: the two together.
*Warm start*: the same start again, the image now on the node. {results['plan']['rounds']} round(s), a fresh
engine for every figure, the order alternating; median (min–max).

{results_table(results)}
{unsupported_note(results)}
![pull and start, gzip](coldstart.svg)

Raw figures: [coldstart.json](coldstart.json).
"""


def engine_said(failure: str) -> str:
    """The engine's own words in a failed command's message (what follows "failed (CODE): ")."""
    found = re.search(r" failed \(\d+\): (.*)", failure, re.DOTALL)
    return (found[1] if found else failure).strip()[-300:]


def unsupported_note(results: dict) -> str:
    said = {published["unsupported"] for entry in results["images"].values()
            for published in entry["compressions"].values() if "unsupported" in published}
    return "".join(f"\nzstd: Docker {results['machine']['docker_server']} downloads zstd layers but could not "
                   f"unpack them, so only gzip was measured on it. It said: `{engine_said(line)}`\n"
                   for line in sorted(said))


def svg_chart(results: dict) -> str:
    """One panel per rate: for each image (gzip), the pull then the start, stacked, to the first answer."""
    rates, images = results["rates"], list(results["images"])
    width, bar_height, gap, left, top = 760, 20, 8, 110, 40
    panel = top + len(images) * (bar_height + gap) + 20
    height = panel * len(rates) + 10
    images = [i for i in images if "rates" in results["images"][i]["compressions"]["gzip"]]
    longest = max([results["images"][i]["compressions"]["gzip"]["rates"][r]["total_seconds"]["median"]
                   for i in images for r in rates], default=1.0)
    scale = (width - left - 120) / longest
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
             f'font-size="12">', f'<rect width="{width}" height="{height}" fill="white"/>']
    for index, rate in enumerate(rates):
        y0 = index * panel
        parts.append(f'<text x="{left}" y="{y0 + 24}" font-size="14" font-weight="bold">{rate_label(rate)}: '
                     'pull (dark), then start; the first answer (gzip layers; s, medians)</text>')
        for row, image in enumerate(images):
            figures = results["images"][image]["compressions"]["gzip"]["rates"][rate]
            pull, start = figures["pull_seconds"]["median"], figures["start_seconds"]["median"]
            y = y0 + top + row * (bar_height + gap)
            parts.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{image}</text>')
            parts.append(bar(left, y, pull * scale, bar_height, "#2c3e50"))
            parts.append(bar(left + pull * scale, y, start * scale, bar_height, "#95a5a6"))
            total = figures["total_seconds"]["median"]  # the median of the sums, as the table gives it
            parts.append(f'<text x="{left + (pull + start) * scale + 4:.1f}" y="{y + 14}">{total:.2f}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def render(results: dict) -> dict[str, str]:
    return {"coldstart.md": markdown(results), "coldstart.svg": svg_chart(results)}


def gaps(results: dict) -> list[str]:
    """What could not be measured: an image in a compression the node's engine did not pull or run."""
    return [f"{image} ({compression}): {published['problem']}" for image, entry in results["images"].items()
            for compression, published in entry["compressions"].items() if "problem" in published]


def guarantees(results: dict) -> list[str]:
    """The setting held: each pull moved over the link at least its layers' bytes (less would mean the node
    found them elsewhere: the figure would not be a cold pull's)."""
    return [f"{image} ({compression}) at {rate}: the pull moved {figures['bytes_moved']:,} bytes over the link, "
            f"fewer than its layers' {published['layer_bytes']:,}"
            for image, entry in results["images"].items() for compression, published in entry["compressions"].items()
            for rate, figures in published.get("rates", {}).items()
            if figures["bytes_moved"] < published["layer_bytes"]]


def shape(results: dict) -> list[str]:
    """Every image, compression and rate measured."""
    return [f"{image} ({compression}) has no figures at {rate} and no problem saying why"
            for image, entry in results.get("images", {}).items()
            for compression, published in entry["compressions"].items()
            for rate in results["rates"]
            if rate not in published.get("rates", {}) and not {"problem", "unsupported"} & set(published)]


STUDY = run_results.Study(
    name="coldstart", summary="pull to first answer on a new node from a registry, at 100 Mbit/s and 1 Gbit/s, "
                              "gzip and zstd (root; minutes)",
    files=("coldstart.json", "coldstart.md", "coldstart.svg"), add_options=add_options, run=run, render=render,
    guarantees=guarantees, gaps=gaps, shape=shape, plans=PLANS, builds=True)
