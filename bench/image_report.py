"""The image study's report: results.json rendered as Markdown (a table per measurement, ratios to the
baseline image) and an SVG chart; and `study`'s targets. Works for `study`'s runs and for `bench
compare` of any images (where a measurement is missing, the image's problems say why). Older documents
reach it through UPGRADES, in the current shape."""

from images.variants import PROJECT_IMAGES

from . import control, noise
from .render import bar, cpu_per_request, mb, mib, ms, ratio, table, targets_table, yes_no

BASELINE = "seed"


def named_baseline_and_request(results: dict) -> dict:
    """Format 1 to 2: runs made before `bench compare` named no baseline (it was always seed) and no request
    (the service's port and routes), and kept their date in the machine's record."""
    results.setdefault("baseline", BASELINE)
    results.setdefault("request", {"port": 5000, "ready": "/health", "url": "/hello/bench"})
    if "date" in results["machine"]:
        results.setdefault("date", results["machine"].pop("date"))
    return results


def sizes_from_the_engine(results: dict) -> dict:
    """Format 2 to 3: runs before images/content.py read the sizes through the engine, and recorded no image
    store: every one ran on Docker 20.10's overlay2."""
    results.setdefault("size_source", "engine")
    results["machine"].setdefault("image_store", "overlay2")
    return results


def memory_from_the_engine(results: dict) -> dict:
    """Format 3 to 4: runs before the engine's stats read memory only as the first process's VmRSS on the
    engine's host (then `rss_from`, and a `memory_problem` meant that figure), and published on loopback."""
    results.pop("rss_from", None)
    results["machine"].setdefault("engine_address", "127.0.0.1")
    for entry in results["variants"].values():
        load = entry.get("load")
        if load is None:
            continue
        if "memory_problem" in load:
            load["rss_problem"] = load.pop("memory_problem")
        load["memory_idle_kib"] = None
        if "rss_under_load_kib" in load:
            load["memory_under_load_kib"] = None
        load["memory_problem"] = "runs before format 4 read only the first process's RSS"
    return results


def cpu_not_read(results: dict) -> dict:
    """Format 4 to 5: runs before format 5 did not read the containers' CPU time."""
    for entry in results["variants"].values():
        if "requests_per_second" in entry.get("load", {}):
            entry["load"].setdefault("cpu_us_per_request", None)
    return results


UPGRADES = (named_baseline_and_request, sizes_from_the_engine, memory_from_the_engine, cpu_not_read)
# How a run measured its sizes, as its report says it.
SIZE_SOURCES = {
    "layers": "Sizes and layers from the image's own layers (read from `docker save`, the same on every image "
              "store):\nuncompressed, the bytes of their files; gzip, each layer gzip'd at level 6, as a push "
              "stores it (about\nwhat a pull moves).",
    "engine": "Sizes from the engine (a run from before format 3): uncompressed, `docker image inspect`'s "
              "`.Size` on\noverlay2 (the same bytes of files, give or take a few KB of symlinks); gzip, of the "
              "whole `docker save`;\nlayers from `docker history`.",
}


def measured(v: dict, key: str) -> dict[str, dict]:
    """{image: its `key` measurement}, for the images that have it."""
    return {name: entry[key] for name, entry in v.items() if key in entry}


def base_of(v: dict, key: str, name: str) -> dict:
    return v.get(name, {}).get(key, {})


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
        {"target": f"micro gzip ≤ {mb(MICRO_MAX_GZIP_BYTES)}", "measured": mb(packed),
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
             "measured": mib(load["rss_idle_kib"]) if load["rss_idle_kib"] is not None else "not measured",
             "met": load["rss_idle_kib"] is not None and load["rss_idle_kib"] <= 10 * 1024},
            {"target": f"{name}: code-only rebuild re-runs no dependency step, ≤ 15% of the cold build",
             "measured": f"pip re-ran: {yes_no(code_edit['dependency_step_reran'])}; "
                         f"{mine['cache']['code_edit_share_of_cold']:.0%} of cold",
             "met": not code_edit["dependency_step_reran"] and mine["cache"]["code_edit_share_of_cold"] <= 0.15},
        ]
    return targets


def size_table(v: dict, base_name: str) -> str:
    base = base_of(v, "size", base_name)
    rows = [[f"`{n}`", mb(s["uncompressed_bytes"]), ratio(s["uncompressed_bytes"], base.get("uncompressed_bytes")),
             mb(s["compressed_bytes"]), ratio(s["compressed_bytes"], base.get("compressed_bytes")), len(s["layers"]),
             s["files"], yes_no(s["shell"]), yes_no(s["package_manager"]), yes_no(s["pip"]), s["python"] or "none",
             yes_no(s["healthcheck"]) if "healthcheck" in s else "–"]
            for n, s in measured(v, "size").items()]
    return table(["image", "uncompressed", f"×{base_name}", "gzip", f"×{base_name}", "layers",
                  "files", "shell", "apt/dpkg/apk", "pip", "Python", "HEALTHCHECK"], rows)


def breakdown_section(v: dict) -> str:
    """Bytes by kind of file, for every image with a size."""
    kinds_by_image = {n: s["bytes_by_kind"] for n, s in measured(v, "size").items()}
    if not kinds_by_image:
        return ""
    kinds = list(next(iter(kinds_by_image.values())))
    rows = [[f"`{n}`", *(mb(k[kind]) for kind in kinds), mb(sum(k.values()))] for n, k in kinds_by_image.items()]
    return ("By kind of file (regular files in `docker export`, by path: the interpreter binary and "
            "libpython; `*.so*` files, Python's extension modules included; `.pyc` and `.py` under "
            "`lib/python3.X/` outside `*-packages`; `/app/deps`; the rest of `/app`; everything else, "
            "seed's Flask and the bases' pip included):\n\n"
            + table(["image", *kinds, "total"], rows) + "\n\n")


def layers_section(v: dict) -> str:
    parts = []
    for name, size in measured(v, "size").items():
        rows = [[mb(layer["bytes"]), f"`{layer['created_by'].replace('|', '/')[:100]}`"]
                for layer in size["layers"] if layer["bytes"] > 0]
        parts.append(f"<details><summary><code>{name}</code>: {len(size['layers'])} layers, "
                     f"{len(rows)} non-empty</summary>\n\n{table(['size', 'created by'], rows)}\n\n</details>")
    return "\n\n".join(parts)


CACHE_BUILDS = ("cold", "no_change", "code_edit", "dependency_edit")


def cache_table(v: dict, base_name: str) -> str:
    base = base_of(v, "cache", base_name)

    def cell(c: dict, key: str) -> str:
        if key not in c:
            return "– (no such file)"
        build, base_seconds = c[key], base.get(key, {}).get("seconds")
        times_base = ratio(build["seconds"], base_seconds)
        return f"{build['seconds']:.1f} s ({build['cached']}/{build['steps']} cached) {times_base}"

    rows = [[f"`{n}`", *(cell(c, k) for k in CACHE_BUILDS),
             yes_no(c["code_edit"]["dependency_step_reran"]) if "code_edit" in c else "–",
             f"{c['code_edit_share_of_cold']:.0%}" if c.get("code_edit_share_of_cold") is not None else "–"]
            for n, c in measured(v, "cache").items()]
    edited = [f"`{n}`: code `{c['edited_files']['code']}`, dependencies `{c['edited_files']['dependency']}`"
              for n, c in measured(v, "cache").items() if "edited_files" in c]
    return (table(["image", "cold (`--no-cache`)", "no change", "code edit", "dependency edit",
                   "dependency install re-ran on code edit", "code edit ÷ cold"], rows)
            + ("\n\nFiles edited: " + "; ".join(edited) + "." if edited else ""))


def startup_table(results: dict, base_name: str) -> str:
    v, noop = results["variants"], results["noop_startup"]
    base = base_of(v, "startup", base_name).get("median")
    rows = [[f"`{n}`", ms(s["min"]), ms(s["median"]), ms(s["p90"]), ms(s["max"]), ratio(s["median"], noop["median"]),
             ratio(s["median"], base)] for n, s in measured(v, "startup").items()]
    rows.append(["noop (floor)", ms(noop["min"]), ms(noop["median"]), ms(noop["p90"]), ms(noop["max"]), "1.00×",
                 ratio(noop["median"], base)])
    return table(["image", "min", "median", "p90", "max", "×noop", f"×{base_name}"], rows)


def phases_section(results: dict) -> str:
    """The start-up split into phases (`study`'s runs); empty for `bench compare`."""
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


def stop_table(v: dict, base_name: str) -> str:
    base = base_of(v, "stop", base_name).get("median")
    rows = [[f"`{n}`", f"{s['median']:.2f} s", f"{s['max']:.2f} s", ", ".join(map(str, s["exit_codes"])),
             ratio(s["median"], base)] for n, s in measured(v, "stop").items()]
    return table(["image", "median", "max", "exit codes", f"×{base_name}"], rows)


def memory_table(v: dict, base_name: str) -> str:
    """Anonymous memory (the engine's) and the first process's RSS (/proc), idle and under load, with a line
    for each reason a figure is missing."""
    base = base_of(v, "load", base_name)

    def cells(m: dict, figure: str) -> list[str]:
        idle, loaded = f"{figure}_idle_kib", f"{figure}_under_load_kib"
        return [mib(m[idle]) if m.get(idle) is not None else "–", ratio(m.get(idle), base.get(idle)),
                "– (no load)" if loaded not in m else mib(m[loaded]) if m[loaded] is not None else "–",
                ratio(m.get(loaded), base.get(loaded))]

    loads = measured(v, "load")
    rows = [[f"`{n}`", *cells(m, "memory"), *cells(m, "rss")] for n, m in loads.items()]
    why = {f"{figure}: {m[f'{figure}_problem']}" for m in loads.values() for figure in ("memory", "rss")
           if m.get(f"{figure}_problem")}
    reasons = "".join(f"\n- {line}" for line in sorted(why))
    return table(["image", "memory idle", f"×{base_name}", "under load (max)", f"×{base_name}",
                  "RSS idle", f"×{base_name}", "under load (max)", f"×{base_name}"], rows) + (
        f"\n\nMissing figures:{reasons}" if reasons else "")


def cpu_cells(cpu: dict | None, base: dict | None) -> list[str]:
    """The server's CPU per answered request, median (min to max), and its ratio to the baseline's."""
    return [cpu_per_request(cpu), ratio(cpu and cpu["median"], (base or {}).get("median"))]


def throughput_table(v: dict, base_name: str) -> str:
    base = base_of(v, "load", base_name)
    base_rps = base.get("requests_per_second", {}).get("median")
    rows = [[f"`{n}`", f"{t['requests_per_second']['median']:,.0f}",
             f"{t['requests_per_second']['min']:,.0f}–{t['requests_per_second']['max']:,.0f}",
             ratio(t["requests_per_second"]["median"], base_rps),
             *cpu_cells(t["cpu_us_per_request"], base.get("cpu_us_per_request")),
             f"{t['p50_seconds'] * 1000:.2f} ms", f"{t['p99_seconds'] * 1000:.2f} ms",
             ratio(t["p99_seconds"], base.get("p99_seconds")), t["non_2xx"], t["socket_errors"]]
            for n, t in measured(v, "load").items() if "requests_per_second" in t]
    return table(["image", "req/s (median)", "min–max", f"×{base_name}", "server CPU per request",
                  f"CPU ×{base_name}", "p50", "p99", f"p99 ×{base_name}", "non-2xx", "socket errors"], rows)


def open_loop_section(v: dict, reference: str, seconds: int) -> str:
    """Latency at fixed rates (`bench compare` runs); empty when no image has them."""
    latencies = measured(v, "open_loop")
    if not latencies:
        return ""
    rates = list(next(iter(latencies.values())))
    rows = [[f"`{n}`", *(f"{r[rate]['p50_seconds'] * 1000:.2f} / {r[rate]['p99_seconds'] * 1000:.2f} ms"
                          + (f", {r[rate]['errors'] + r[rate]['non_2xx']} failed"
                             if r[rate]["errors"] + r[rate]["non_2xx"] else "") for rate in rates)]
            for n, r in latencies.items()]
    return f"""## Latency at fixed rates

The open-loop generator (bench/openloop.py) sends on schedule at 25%, 50% and 75% of `{reference}`'s median
throughput above, {seconds} s per rate, one image at a time, through the `-p` mapping; a request waits for a
free connection in a pool of 64 and that wait counts in its latency. p50 / p99 per rate:

{table(["image", *(f"{rate} req/s" for rate in rates)], rows)}

"""


def hardening_section(results: dict) -> str:
    """The control: the service against plain waitress, same app, same threads (`study`'s runs); empty for
    `bench compare`."""
    cost = results.get("hardening_cost")
    if not cost:
        return ""
    rows = [[name, *control.row_cells(route)] for name, route in cost.items()]
    return f"""## What the hardening costs

The control: `python -m service` against plain waitress serving the same `service.app.create_app` with the
same threads (`{control.plain_waitress_code("ADDRESS", control.THREADS)}`), both running at once, neither
writing an access log. {control.statistics_note(cost)}

{table(["route", "service req/s", "plain waitress req/s", "service ÷ plain", "p99 service / plain",
        "p99 ÷ plain"], rows)}

"""


def gaps(results: dict) -> list[str]:
    """What could not be measured, one line per image and problem."""
    return [f"{name}: {problem}" for name, entry in results["variants"].items()
            for problem in entry.get("problems", [])]


def problems_section(v: dict) -> str:
    """What could not be measured, image by image (`bench compare` of images that exit, never answer...)."""
    lines = [f"- `{n}`: {problem}" for n, entry in v.items() for problem in entry.get("problems", [])]
    if not lines:
        return ""
    return "## What could not be measured\n\n" + "\n".join(lines) + "\n\n"


def bind_address(machine: dict) -> str:
    """What the bench published on: the engine's loopback, or every interface of an engine reached elsewhere."""
    return "127.0.0.1" if machine["engine_address"] in ("127.0.0.1", "localhost", "::1") else "0.0.0.0"


def markdown(results: dict) -> str:
    v, m, plan = results["variants"], results["machine"], results["plan"]
    base_name, request = results["baseline"], results["request"]
    # the wrk settings, from an image whose throughput was measured (others may have idle memory only)
    load = next((x for x in measured(v, "load").values() if "connections" in x), None) or {
        "connections": plan.get("connections", 16), "seconds": plan.get("load_seconds", "?")}
    targets = f"## Targets\n\n{targets_table(results['targets'])}\n\n" if results.get("targets") else ""
    images = table(["image", "tag", "what it is"],
                   [[f"`{n}`", f"`{x['tag']}`", x["note"] or "–"] for n, x in v.items()])
    command = f"`{results['command']}`. " if results.get("command") else ""
    noop_command = f" (`{results['noop_command']}`)" if results.get("noop_command") else ""
    open_loop = open_loop_section(v, results.get("open_loop_reference", base_name), plan.get("open_loop_seconds", 0))
    cache_note = ("A cache mount (`RUN --mount=type=cache`) survives `--no-cache`: a cold build reuses what it "
                  "holds."
                  if results.get("compare") else
                  "A pip cache mount survives `--no-cache`, so the\nproject images' cold builds reuse downloaded "
                  "wheels; `seed` uses `pip --no-cache-dir` and downloads again.")
    cache = ("" if not measured(v, "cache") else f"""## Build cache

A temporary copy of each build context, built four times in a row: `docker build --no-cache`, then with no
change, then after appending a comment line to the code file, then to the dependency file. Steps and cache
hits are read from BuildKit's `--progress=plain` output. {cache_note}

{cache_table(v, base_name)}

""")
    return f"""# Image study: {results['label']}

{results['date']}, {results['mode']} mode. {command}{m['cpus']} CPUs, {m['platform']}, Docker \
{m['docker_server']}, image store {m['image_store']}.
Bases: {m.get('bases', 'none built')}. Every ratio is to `{base_name}`, measured in the same run.
{noise.describe(results.get("noise"))}

{images}

![size and start-up](chart.svg)

{problems_section(v)}{targets}## Size

{SIZE_SOURCES[results["size_source"]]}
File count, shell and package manager from `docker export`; Python from `python3 -c 'import sys; ...'` in
the image.

{size_table(v, base_name)}

{breakdown_section(v)}{layers_section(v)}

{cache}## Start-up

`docker run -d -p {bind_address(m)}:PORT:{request['port']} IMAGE`, then `GET {request['ready']}` at
{m['engine_address']}:PORT every 5 ms with a 200 ms timeout until it answers 2xx (the port proxy accepts
connections before the app listens). Noop floor: the same `docker run -d -p ...` of a container that only
sleeps, returning when it runs{noop_command}. \
{plan['startup_runs']} interleaved rounds after one warm-up.

{startup_table(results, base_name)}{phases_section(results)}

## Stop

`docker stop` (Docker's default 10 s before SIGKILL) of a ready container, {plan['stop_runs']} run(s); exit
code from `docker inspect`. 137 means Docker had to kill it.

{stop_table(v, base_name)}

## Memory

Memory is the container's anonymous memory (its cgroup's `anon`, `rss` on cgroup v1: every process's heap
and stacks, not the page cache or mapped files, which the kernel can drop), from the engine's stats (`GET
/containers/ID/stats` through `docker system dial-stdio`), so it is read wherever the engine runs. RSS is the
first process's VmRSS from `/proc/PID/status` (shared libraries and mapped files included; what runs before
format 4 reported), read only where the engine runs on this machine. Both idle after 20 requests and 2 s,
and in the middle of each load run.

{memory_table(v, base_name)}

## Throughput

`wrk --latency -t2 -c{load['connections']} -d{load['seconds']}s --timeout 5s http://{m['engine_address']}:PORT{request['url']}`
through the `-p` mapping, {plan['load_runs']} runs after a 1 s warm-up; latency percentiles are from the median run.
wrk and the server share the machine's {m['cpus']} CPUs, so req/s moves with what wrk takes. *Server CPU per
request* is the server's own cost: the container's CPU time (user + system, every process in it: its cgroup's
usage, from the engine's stats) over each run, divided by the 2xx answers in it (Docker's port proxy is outside
the container).

{throughput_table(v, base_name)}

{open_loop}{hardening_section(results)}\
{SIBLING_REPORTS}Raw figures: [results.json](results.json). Re-render: `python -m bench report DIR`.
"""


# The same words whichever studies shared the directory: writing one study rewrites only its own files.
SIBLING_REPORTS = ("Other studies run with the same `--output` write their reports beside this one: load, faults "
                   "and hostile clients in reliability.md (`python -m bench reliability`), open-loop latency at "
                   "fixed rates in latency.md (`python -m bench latency`).\n\n")


COLOURS = {"seed": "#c0392b", "naive": "#e67e22", "slim": "#2980b9", "distroless": "#27ae60", "micro": "#8e44ad"}
PALETTE = ("#2980b9", "#27ae60", "#8e44ad", "#e67e22", "#c0392b", "#16a085", "#7f8c8d")


def svg_chart(results: dict) -> str:
    """Two bar panels: image size (uncompressed, with gzip inside) and median start-up (noop marked); an
    image without a start-up figure has no start-up bar."""
    v = results["variants"]
    names = list(measured(v, "size"))
    width, bar_height, gap, left = 760, 22, 10, 110
    panel_width = (width - left - 40) / 2
    sizes = {n: v[n]["size"]["uncompressed_bytes"] / 1e6 for n in names}
    packed = {n: v[n]["size"]["compressed_bytes"] / 1e6 for n in names}
    starts = {n: v[n]["startup"]["median"] * 1000 for n in names if "startup" in v[n]}
    noop = results["noop_startup"]["median"] * 1000
    height = 60 + len(names) * (bar_height + gap) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="20" font-size="14" font-weight="bold">Image size (MB; darker: gzip)</text>',
             f'<text x="{left + panel_width + 30}" y="20" font-size="14" font-weight="bold">'
             f'Start-up to first 2xx (ms, median)</text>']
    max_size, max_start = max(sizes.values(), default=1), max([*starts.values(), noop])
    for i, name in enumerate(names):
        y = 40 + i * (bar_height + gap)
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{name}</text>')
        colour = COLOURS.get(name, PALETTE[i % len(PALETTE)])
        w = (panel_width - 80) * sizes[name] / max_size  # room left for the label
        wc = (panel_width - 80) * packed[name] / max_size
        parts.append(bar(left, y, w, bar_height, colour, opacity=0.45))
        parts.append(bar(left, y, wc, bar_height, colour))
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 15}">{sizes[name]:.0f} ({packed[name]:.0f})</text>')
        x0 = left + panel_width + 30
        if name in starts:
            ws = (panel_width - 60) * starts[name] / max_start
            parts.append(bar(x0, y, ws, bar_height, colour))
            parts.append(f'<text x="{x0 + ws + 4:.1f}" y="{y + 15}">{starts[name]:.0f}</text>')
        else:
            parts.append(f'<text x="{x0}" y="{y + 15}">never answered</text>')
    x_noop = left + panel_width + 30 + (panel_width - 60) * noop / max_start
    bottom = 40 + len(names) * (bar_height + gap)
    parts.append(f'<line x1="{x_noop:.1f}" y1="34" x2="{x_noop:.1f}" y2="{bottom}" stroke="black" '
                 f'stroke-dasharray="4 3"/>')
    parts.append(f'<text x="{x_noop:.1f}" y="{bottom + 16}" text-anchor="middle">noop container {noop:.0f} ms</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def render(results: dict) -> dict[str, str]:
    """report.md and chart.svg."""
    return {"report.md": markdown(results), "chart.svg": svg_chart(results)}


def evaluate(results: dict) -> dict:
    """`study`'s targets, read again from the figures (`bench compare` runs have none)."""
    if not results.get("compare"):
        results["targets"] = evaluate_targets(results)
    return results


def shape(results: dict) -> list[str]:
    """What a complete run holds: every image measured in every respect, or a problem line saying why not."""
    problems = []
    for name, entry in results.get("variants", {}).items():
        if entry.get("problems"):
            continue
        for key in ("size", "startup", "stop", "load"):
            if key not in entry:
                problems.append(f"{name} has no {key} figures and no problem line saying why")
    return problems


def guarantees(results: dict) -> list[str]:
    """`study`'s: every project image stopped by itself (exit 0) in every run, and the service served at
    least control.FLOOR of what plain waitress served beside it. A compare run guarantees nothing of images
    it did not build."""
    if results.get("compare"):
        return []
    problems = control.failures(results.get("hardening_cost"))
    for name, entry in results.get("variants", {}).items():
        if name not in PROJECT_IMAGES:
            continue
        codes = entry.get("stop", {}).get("exit_codes", [])
        if not codes or any(codes):
            problems.append(f"{name}: docker stop left exit codes {codes}; every one must be 0 (137: it was killed)")
    return problems

