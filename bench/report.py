"""Render results.json as a Markdown report (a table per study, ratios to `seed`) and an SVG chart."""

import json
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from pathlib import Path

from . import noise, overhead
from .docker import progress

BASELINE = "seed"


def ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "–"
    return f"{value / base:.2f}×"


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# Start-up ceiling, as a multiple of a noop container's start: the issue 9 goal for the shell-less images.
STARTUP_CEILING = {"slim": 1.2, "distroless": 1.15, "micro": 1.15}
MICRO_MAX_BYTES = 15_000_000
MICRO_MAX_SHARE_OF_DISTROLESS = 0.30
MICRO_MAX_GZIP_BYTES = 6_000_000


def micro_targets(v: dict) -> list[dict]:
    """The micro image's own targets: size against an absolute ceiling and against distroless, start-up
    against distroless in the same run."""
    micro, distroless = v["micro"], v["distroless"]
    size, share = micro["size"]["uncompressed_bytes"], (micro["size"]["uncompressed_bytes"]
                                                         / distroless["size"]["uncompressed_bytes"])
    packed = micro["size"]["compressed_bytes"]
    mine, theirs = micro["startup"]["median"], distroless["startup"]["median"]
    return [
        {"target": f"micro uncompressed ≤ {mb(MICRO_MAX_BYTES)} and ≤ {MICRO_MAX_SHARE_OF_DISTROLESS:.2f}× distroless",
         "measured": f"{mb(size)}, {share:.2f}× distroless",
         "met": size <= MICRO_MAX_BYTES and share <= MICRO_MAX_SHARE_OF_DISTROLESS},
        {"target": f"micro gzip of `docker save` ≤ {mb(MICRO_MAX_GZIP_BYTES)}", "measured": mb(packed),
         "met": packed <= MICRO_MAX_GZIP_BYTES},
        {"target": "micro: start-up to first 200 no slower than distroless's", "measured":
         f"{ms(mine)} vs {ms(theirs)} ({mine / theirs:.2f}×)", "met": mine <= theirs},
    ]


HARDENING_MIN_RATIO = 0.95  # the service's throughput against plain waitress's, same app and threads
HARDENING_MAX_P99_RATIO = 1.1
FRONTIER = {"loopback, 1 thread": 1.5, "loopback, 8 threads": 1.2}  # beyond matching waitress: beating it
LIKE_FOR_LIKE = ("loopback, 8 threads", "slim, straight to the container")


def hardening_targets(cost: dict) -> list[dict]:
    """The service against plain waitress in the same run (runs from issue 16 on)."""
    targets = []
    for name in (n for n in LIKE_FOR_LIKE if n in cost):
        route = cost[name]
        ratio, p99 = route["ratio"]["median"], route["p99_ratio"]["median"]
        targets.append({"target": f"hardening cost, {name}: ≥ {HARDENING_MIN_RATIO}× plain waitress's throughput, "
                                  f"p99 ≤ {HARDENING_MAX_P99_RATIO}× its p99",
                        "measured": f"{ratio:.2f}× throughput, {p99:.2f}× p99",
                        "met": ratio >= HARDENING_MIN_RATIO and p99 <= HARDENING_MAX_P99_RATIO})
    for name, wanted in FRONTIER.items():
        if name in cost:
            ratio = cost[name]["ratio"]["median"]
            targets.append({"target": f"beyond waitress, {name}: ≥ {wanted}× plain waitress's throughput",
                            "measured": f"{ratio:.2f}×", "met": ratio >= wanted})
    return targets


def evaluate_targets(results: dict) -> list[dict]:
    """The issues' targets, each with the measured value and whether it was met."""
    v = results["variants"]
    noop = results["noop_startup"]["median"]
    targets = [{
        "target": "distroless ≤ 50% of slim's uncompressed size",
        "measured": f"{v['distroless']['size']['uncompressed_bytes'] / v['slim']['size']['uncompressed_bytes']:.0%}",
        "met": v["distroless"]["size"]["uncompressed_bytes"] <= 0.5 * v["slim"]["size"]["uncompressed_bytes"],
    }]
    if "micro" in v:
        targets += micro_targets(v)
    targets += hardening_targets(results.get("hardening_cost", {}))
    for name in (n for n in STARTUP_CEILING if n in v):
        mine = v[name]
        startup, ceiling = mine["startup"]["median"], STARTUP_CEILING[name]
        if "micro" not in v:  # runs from before issue 9: every image was judged against 1.2 times
            ceiling = 1.2
        load, seed_load = mine["load"], v[BASELINE]["load"]
        code_edit = mine["cache"]["code_edit"]
        targets += [
            {"target": f"{name}: start-up to first 200 ≤ {ceiling:g}× a noop container",
             "measured": f"{startup / noop:.2f}× ({ms(startup)} vs {ms(noop)})", "met": startup <= ceiling * noop},
            {"target": f"{name}: start-up faster than seed",
             "measured": f"{ms(startup)} vs {ms(v[BASELINE]['startup']['median'])}",
             "met": startup < v[BASELINE]["startup"]["median"]},
            {"target": f"{name}: docker stop ≤ 0.3 s",
             "measured": f"{mine['stop']['median']:.2f} s, exit codes {mine['stop']['exit_codes']}",
             "met": mine["stop"]["median"] <= 0.3},
            {"target": f"{name}: throughput ≥ 4× seed",
             "measured": ratio(load["requests_per_second"]["median"], seed_load["requests_per_second"]["median"]),
             "met": load["requests_per_second"]["median"] >= 4 * seed_load["requests_per_second"]["median"]},
            {"target": f"{name}: p99 ≤ 15 ms at {load['connections']} connections",
             "measured": ms(load["p99_seconds"]), "met": load["p99_seconds"] <= 0.015},
            {"target": f"{name}: p99 at {load['connections']} connections ≤ 0.5× seed's",
             "measured": f"{ratio(load['p99_seconds'], seed_load['p99_seconds'])} "
                         f"({ms(load['p99_seconds'])} vs {ms(seed_load['p99_seconds'])})",
             "met": load["p99_seconds"] <= 0.5 * seed_load["p99_seconds"]},
            {"target": f"{name}: idle RSS ≤ 10 MiB",
             "measured": f"{load['rss_idle_kib'] / 1024:.1f} MiB", "met": load["rss_idle_kib"] <= 10 * 1024},
            {"target": f"{name}: code-only rebuild re-runs no dependency step, ≤ 15% of the cold build",
             "measured": f"pip re-ran: {yes_no(code_edit['dependency_step_reran'])}; "
                         f"{mine['cache']['code_edit_share_of_cold']:.0%} of cold",
             "met": not code_edit["dependency_step_reran"] and mine["cache"]["code_edit_share_of_cold"] <= 0.15},
        ]
    return targets


def size_table(v: dict) -> str:
    base = v[BASELINE]["size"]
    rows = [[f"`{n}`", mb(s["uncompressed_bytes"]), ratio(s["uncompressed_bytes"], base["uncompressed_bytes"]),
             mb(s["compressed_bytes"]), ratio(s["compressed_bytes"], base["compressed_bytes"]), len(s["layers"]),
             s["files"], yes_no(s["shell"]), yes_no(s["package_manager"]), yes_no(s["pip"]), s["python"]]
            for n, s in ((n, x["size"]) for n, x in v.items())]
    return table(["variant", "uncompressed", "×seed", "gzip of `docker save`", "×seed", "layers", "files",
                  "shell", "apt/dpkg", "pip", "Python"], rows)


def breakdown_section(v: dict) -> str:
    """Bytes by kind of file, for the runs that recorded it (issue 9 on); empty for older runs."""
    measured = {n: x["size"]["bytes_by_kind"] for n, x in v.items() if "bytes_by_kind" in x["size"]}
    if not measured:
        return ""
    kinds = list(next(iter(measured.values())))
    rows = [[f"`{n}`", *(mb(k[kind]) for kind in kinds), mb(sum(k.values()))] for n, k in measured.items()]
    return ("By kind of file (regular files in `docker export`, by path: the interpreter binary and "
            "libpython; `*.so*` files, Python's extension modules included; `.pyc` and `.py` under "
            "`lib/python3.X/` outside `*-packages`; `/app/deps`; the rest of `/app`; everything else, "
            "seed's Flask and the bases' pip included):\n\n"
            + table(["variant", *kinds, "total"], rows) + "\n\n")


def layers_section(v: dict) -> str:
    parts = []
    for name, x in v.items():
        rows = [[mb(layer["bytes"]), f"`{layer['created_by'].replace('|', '/')[:100]}`"]
                for layer in x["size"]["layers"] if layer["bytes"] > 0]
        parts.append(f"<details><summary><code>{name}</code>: {len(x['size']['layers'])} layers, "
                     f"{len(rows)} non-empty</summary>\n\n{table(['size', 'created by'], rows)}\n\n</details>")
    return "\n\n".join(parts)


def cache_table(v: dict) -> str:
    base = v[BASELINE]["cache"]

    def cell(build: dict, base_build: dict) -> str:
        times_seed = ratio(build["seconds"], base_build["seconds"])
        return f"{build['seconds']:.1f} s ({build['cached']}/{build['steps']} cached) {times_seed}"

    rows = [[f"`{n}`", *(cell(c[k], base[k]) for k in ("cold", "no_change", "code_edit", "dependency_edit")),
             yes_no(c["code_edit"]["dependency_step_reran"]), f"{c['code_edit_share_of_cold']:.0%}"]
            for n, c in ((n, x["cache"]) for n, x in v.items())]
    return table(["variant", "cold (`--no-cache`)", "no change", "code edit", "dependency edit",
                  "pip re-ran on code edit", "code edit ÷ cold"], rows)


def startup_table(results: dict) -> str:
    v, noop = results["variants"], results["noop_startup"]
    seed = v[BASELINE]["startup"]["median"]
    rows = [[f"`{n}`", ms(s["min"]), ms(s["median"]), ms(s["p90"]), ms(s["max"]), ratio(s["median"], noop["median"]),
             ratio(s["median"], seed)] for n, s in ((n, x["startup"]) for n, x in v.items())]
    rows.append(["noop (floor)", ms(noop["min"]), ms(noop["median"]), ms(noop["p90"]), ms(noop["max"]), "1.00×",
                 ratio(noop["median"], seed)])
    return table(["variant", "min", "median", "p90", "max", "×noop", "×seed"], rows)


def phases_section(results: dict) -> str:
    """The start-up split into phases (runs from issue 9 on); empty for older runs."""
    phases = results.get("startup_phases")
    if not phases:
        return ""
    rows = [[f"`{n}`", ms(p["docker"]), ms(p["python"]), ms(p["imports"]), ms(p["first_answer"]), ms(p["total"]),
             p["runs"]] for n, p in phases.items()]
    return ("\n\nWhere the time goes, median of a few more starts of each project image: *docker* from `docker "
            "run -d` until Docker started the process (its `.State.StartedAt`); *python* from then until the "
            "service logged that it listens (interpreter, imports, bind; the log's clock has millisecond steps); "
            "*imports*, part of *python*: the sum of every module's own time in one `python3 -X importtime -c "
            "'import service.server'` in the image; *first answer* from listening until the bench's poll got its "
            "first 200 (Docker's port proxy and the 5 ms poll). These starts run after the interleaved rounds "
            "above, not beside the noop, so compare them with each other, not with the noop.\n\n"
            + table(["image", "docker", "python", "imports", "first answer", "total", "runs"], rows))


def stop_table(v: dict) -> str:
    seed = v[BASELINE]["stop"]["median"]
    rows = [[f"`{n}`", f"{s['median']:.2f} s", f"{s['max']:.2f} s", ", ".join(map(str, s["exit_codes"])),
             ratio(s["median"], seed)] for n, s in ((n, x["stop"]) for n, x in v.items())]
    return table(["variant", "median", "max", "exit codes", "×seed"], rows)


def memory_table(v: dict) -> str:
    seed = v[BASELINE]["load"]
    rows = [[f"`{n}`", f"{m['rss_idle_kib'] / 1024:.1f} MiB", ratio(m["rss_idle_kib"], seed["rss_idle_kib"]),
             f"{m['rss_under_load_kib'] / 1024:.1f} MiB", ratio(m["rss_under_load_kib"], seed["rss_under_load_kib"])]
            for n, m in ((n, x["load"]) for n, x in v.items())]
    return table(["variant", "RSS idle", "×seed", "RSS under load (max)", "×seed"], rows)


def throughput_table(v: dict) -> str:
    seed = v[BASELINE]["load"]
    rows = [[f"`{n}`", f"{t['requests_per_second']['median']:,.0f}",
             f"{t['requests_per_second']['min']:,.0f}–{t['requests_per_second']['max']:,.0f}",
             ratio(t["requests_per_second"]["median"], seed["requests_per_second"]["median"]),
             f"{t['p50_seconds'] * 1000:.2f} ms", f"{t['p99_seconds'] * 1000:.2f} ms",
             ratio(t["p99_seconds"], seed["p99_seconds"]), t["non_2xx"], t["socket_errors"]]
            for n, t in ((n, x["load"]) for n, x in v.items())]
    return table(["variant", "req/s (median)", "min–max", "×seed", "p50", "p99", "p99 ×seed", "non-2xx",
                  "socket errors"], rows)


def hardening_section(results: dict) -> str:
    """The control: the service against plain waitress, same app, same threads (runs from issue 16 on)."""
    cost = results.get("hardening_cost")
    if not cost:
        return ""
    rows = [[name, *overhead.row_cells(route)] for name, route in cost.items()]
    return f"""## What the hardening costs

The control: `python -m service` against plain waitress serving the same `service.app.create_app` with the
same threads (`{overhead.plain_waitress_code("ADDRESS", overhead.THREADS)}`), both running at once, neither
writing an access log. {overhead.statistics_note(cost)}

{table(["route", "service req/s", "plain waitress req/s", "service ÷ plain", "p99 service / plain",
        "p99 ÷ plain"], rows)}

"""


def markdown(results: dict, has_reliability: bool = False, has_latency: bool = False) -> str:
    v, m, plan = results["variants"], results["machine"], results["plan"]
    reliability_link = ("Load, faults and hostile clients: [reliability.md](reliability.md) "
                        "(`python -m bench reliability`).\n\n" if has_reliability else "")
    load = next(iter(v.values()))["load"]
    latency_link = ("Open-loop latency at fixed rates: [latency.md](latency.md) (`python -m bench latency`).\n\n"
                    if has_latency else "")
    targets = table(["target", "measured", "met"],
                    [[t["target"], t["measured"], "yes" if t["met"] else "**no**"] for t in results["targets"]])
    variants = table(["variant", "what it is"], [[f"`{n}`", x["note"]] for n, x in v.items()])
    python_probe = "import sys" if "micro" in v else "import platform"  # micro keeps no platform module
    return f"""# Image study: {results['label']}

{m['date']}, {results['mode']} mode. {m['cpus']} CPUs, {m['platform']}, Docker {m['docker_server']}.
Bases: {m['bases']}. Every ratio is to `seed`, measured in the same run.
{noise.describe(results.get("noise"))}

{variants}

![size and start-up](chart.svg)

## Targets

{targets}

## Size

`docker image inspect` (uncompressed); gzip of `docker save` (about what a pull moves); file count,
shell and package manager from `docker export`; Python from `python3 -c '{python_probe}; ...'` in the image.

{size_table(v)}

{breakdown_section(v)}{layers_section(v)}

## Build cache

A temporary copy of each build context, built four times in a row: `docker build --no-cache`, then with no
change, then after appending a comment to the code file, then to the dependency file. Steps and cache hits
are read from BuildKit's `--progress=plain` output. The pip cache mount survives `--no-cache`, so the
project images' cold builds reuse downloaded wheels; `seed` uses `pip --no-cache-dir` and downloads again.

{cache_table(v)}

## Start-up

`docker run -d -p 127.0.0.1:PORT:5000 IMAGE`, then `GET /health` every 5 ms with a 200 ms timeout until it
answers 200 (the port proxy accepts connections before the app listens). Noop floor: the same `docker run
-d -p ...` of a container that only sleeps, returning when it runs. {plan['startup_runs']} interleaved rounds
after one warm-up.

{startup_table(results)}{phases_section(results)}

## Stop

`docker stop` (Docker's default 10 s before SIGKILL) of a ready container, {plan['stop_runs']} run(s); exit
code from `docker inspect`. 137 means Docker had to kill it.

{stop_table(v)}

## Memory

VmRSS of the container's PID 1 (the server), read by `docker exec CONTAINER python3 -c ...`: idle after 20
requests and 2 s, and in the middle of each load run.

{memory_table(v)}

## Throughput

`wrk --latency -t2 -c{load['connections']} -d{load['seconds']}s --timeout 5s http://127.0.0.1:PORT/hello/bench`
through the `-p` mapping, {plan['load_runs']} runs after a 1 s warm-up; latency percentiles are from the median run.
wrk and the server share the machine's {m['cpus']} CPUs.

{throughput_table(v)}

{hardening_section(results)}{reliability_link}{latency_link}Raw figures: [results.json](results.json). \
Re-render: `python -m bench report DIR`.
"""


def bar(x: float, y: float, width: float, height: float, colour: str, opacity: float = 1.0) -> str:
    return (f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{height}" fill="{colour}" '
            f'opacity="{opacity}"/>')


def svg_chart(results: dict) -> str:
    """Two bar panels: image size (uncompressed, with gzip inside) and median start-up (noop marked)."""
    v = results["variants"]
    names = list(v)
    width, bar_height, gap, left = 760, 22, 10, 110
    panel_width = (width - left - 40) / 2
    colours = {"seed": "#c0392b", "naive": "#e67e22", "slim": "#2980b9", "distroless": "#27ae60",
               "micro": "#8e44ad"}
    sizes = {n: v[n]["size"]["uncompressed_bytes"] / 1e6 for n in names}
    packed = {n: v[n]["size"]["compressed_bytes"] / 1e6 for n in names}
    starts = {n: v[n]["startup"]["median"] * 1000 for n in names}
    noop = results["noop_startup"]["median"] * 1000
    height = 60 + len(names) * (bar_height + gap) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="20" font-size="14" font-weight="bold">Image size (MB; darker: gzip)</text>',
             f'<text x="{left + panel_width + 30}" y="20" font-size="14" font-weight="bold">'
             f'Start-up to first 200 (ms, median)</text>']
    max_size, max_start = max(sizes.values()), max([*starts.values(), noop])
    for i, name in enumerate(names):
        y = 40 + i * (bar_height + gap)
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{name}</text>')
        colour = colours.get(name, "#888")
        w = (panel_width - 80) * sizes[name] / max_size  # room left for the label
        wc = (panel_width - 80) * packed[name] / max_size
        parts.append(bar(left, y, w, bar_height, colour, opacity=0.45))
        parts.append(bar(left, y, wc, bar_height, colour))
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 15}">{sizes[name]:.0f} ({packed[name]:.0f})</text>')
        x0 = left + panel_width + 30
        ws = (panel_width - 60) * starts[name] / max_start
        parts.append(bar(x0, y, ws, bar_height, colour))
        parts.append(f'<text x="{x0 + ws + 4:.1f}" y="{y + 15}">{starts[name]:.0f}</text>')
    x_noop = left + panel_width + 30 + (panel_width - 60) * noop / max_start
    bottom = 40 + len(names) * (bar_height + gap)
    parts.append(f'<line x1="{x_noop:.1f}" y1="34" x2="{x_noop:.1f}" y2="{bottom}" stroke="black" '
                 f'stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{x_noop:.1f}" y="{bottom + 16}" text-anchor="middle">noop container {noop:.0f} ms</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_json_report(directory: Path, name: str, results: dict, render: Callable[[dict], str]) -> None:
    """NAME.json and the NAME.md it renders to, in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (directory / f"{name}.md").write_text(render(results))
    progress(f"results in {directory}/: {name}.json, {name}.md")


def rerender_json(directory: Path, name: str, render: Callable[[dict], str]) -> None:
    """NAME.md again from NAME.json, where the directory holds one."""
    if (directory / f"{name}.json").is_file():
        (directory / f"{name}.md").write_text(render(json.loads((directory / f"{name}.json").read_text())))


def stale_markdown(directory: Path, name: str, render: Callable[[dict], str]) -> list[str]:
    """A problem when NAME.json is there and NAME.md is missing or not what it renders to."""
    if not (directory / f"{name}.json").is_file():
        return []
    expected = render(json.loads((directory / f"{name}.json").read_text()))
    if not (directory / f"{name}.md").is_file() or (directory / f"{name}.md").read_text() != expected:
        return [f"{name}.md is missing or not what {name}.json renders to: run python -m bench report DIR"]
    return []


def rendered(results: dict, directory: Path) -> str:
    """report.md for `results`, linking the other studies' reports that `directory` holds."""
    return markdown(results, (directory / "reliability.json").is_file(), (directory / "latency.json").is_file())


def write_all(results: dict, directory: Path) -> None:
    (directory / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (directory / "report.md").write_text(rendered(results, directory))
    (directory / "chart.svg").write_text(svg_chart(results))


def check(directory: Path) -> list[str]:
    """Problems with a results directory: missing files, an unparsable chart, a report missing a study."""
    problems = []
    for name in ("results.json", "report.md", "chart.svg"):
        if not (directory / name).is_file():
            problems.append(f"{directory / name} is missing")
    if problems:
        return problems
    results = json.loads((directory / "results.json").read_text())
    if rendered(results, directory) != (directory / "report.md").read_text():
        problems.append("report.md is not what results.json renders to: run python -m bench report DIR")
    text = (directory / "report.md").read_text()
    for heading in ("## Targets", "## Size", "## Build cache", "## Start-up", "## Stop", "## Memory", "## Throughput"):
        if heading not in text:
            problems.append(f"report.md has no '{heading}' section")
    if (directory / "reliability.json").is_file():
        from .reliability import markdown as reliability_markdown

        expected = reliability_markdown(json.loads((directory / "reliability.json").read_text()))
        if not (directory / "reliability.md").is_file() or (directory / "reliability.md").read_text() != expected:
            problems.append("reliability.md is missing or not what reliability.json renders to")
    try:
        root = ElementTree.fromstring((directory / "chart.svg").read_text())
        if len(root.findall("{http://www.w3.org/2000/svg}rect")) < 1 + 3 * len(results["variants"]):
            problems.append("chart.svg has fewer bars than variants")
    except ElementTree.ParseError as error:
        problems.append(f"chart.svg is not valid XML: {error}")
    return problems
