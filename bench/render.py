"""Formatting every report shares: units, ratios, Markdown tables, the targets table, SVG bars."""


def ratio(value: float | None, base: float | None) -> str:
    if value is None or not base:
        return "–"
    return f"{value / base:.2f}×"


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def mib(kib: float) -> str:
    return f"{kib / 1024:.1f} MiB"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def cpu_per_request(cpu: dict | None) -> str:
    """A summary of CPU µs per answered request, median (min to max); "not measured" for None."""
    return "not measured" if cpu is None else f"{cpu['median']:.0f} µs ({cpu['min']:.0f}–{cpu['max']:.0f})"


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def targets_table(targets: list[dict]) -> str:
    """Targets (each a dict of target, measured, met) as a table; a missed one in bold."""
    return table(["target", "measured", "met"],
                 [[t["target"], t["measured"], "yes" if t["met"] else "**no**"] for t in targets])


def bar(x: float, y: float, width: float, height: float, colour: str, opacity: float = 1.0) -> str:
    return (f'<rect x="{x:.1f}" y="{y}" width="{width:.1f}" height="{height}" fill="{colour}" '
            f'opacity="{opacity}"/>')
