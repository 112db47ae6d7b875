"""How quiet the machine was: the load average, and the CPU the machine spent while the bench itself was idle.

Before and after each measurement the bench sits still (its containers idle, no load generator running):
a second first, while Docker writes the containers' logs, then half a second in which it reads
/proc/stat. Whatever CPU the machine spent in that half second was spent by something else.
A run during which that exceeded BUSY_CPUS is marked noisy in its report; its ratios, measured side by
side, still hold better than its absolute figures.
"""

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

WINDOW_SECONDS = 0.5
SETTLE_SECONDS = 1.0  # before each sample: Docker drains the containers' logs meanwhile
BUSY_CPUS = 0.15  # CPUs' worth of work by others while the bench was idle that makes a run noisy


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot; busy excludes idle and iowait."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def background_cpus(seconds: float = WINDOW_SECONDS) -> float:
    """CPUs' worth of work the machine did during a short window in which the bench does nothing."""
    busy0, total0 = cpu_jiffies()
    time.sleep(seconds)
    busy1, total1 = cpu_jiffies()
    cpus = os.cpu_count() or 1
    return (busy1 - busy0) / max(total1 - total0, 1) * cpus


def wait_until_quiet(seconds: float = 30.0) -> None:
    """After the bench's own heavy work (building, pushing, an engine removed), whose aftermath (containerd
    collecting what an engine left, a registry writing) would read as others' work: wait, at most `seconds`,
    until a window shows the machine idle. Busy for longer, the samples after it say so."""
    deadline = time.monotonic() + seconds
    while background_cpus() > BUSY_CPUS and time.monotonic() < deadline:
        pass


def sample(label: str) -> dict:
    return {"label": label, "load_average": os.getloadavg()[0], "background_cpus": round(background_cpus(), 3)}


class Quietness:
    """The samples of one run, taken around each of its measurements."""

    def __init__(self) -> None:
        self.samples: list[dict] = []

    @contextmanager
    def around(self, label: str) -> Iterator[None]:
        """Use as `with quietness.around("load: slim"):` to sample before and after a measurement."""
        self.record(f"before {label}")
        try:
            yield
        finally:
            self.record(f"after {label}")

    def record(self, label: str) -> None:
        time.sleep(SETTLE_SECONDS)  # dockerd writing a burst of access lines is the bench's own, not others'
        self.samples.append(sample(label))

    def summary(self) -> dict:
        return summarise(self.samples)


def summarise(samples: list[dict]) -> dict:
    busiest = max((s["background_cpus"] for s in samples), default=0.0)
    return {"samples": samples, "busy_threshold_cpus": BUSY_CPUS,
            "max_background_cpus": busiest,
            "max_load_average": max((s["load_average"] for s in samples), default=0.0),
            "noisy": busiest > BUSY_CPUS}


def describe(noise: dict | None) -> str:
    """One sentence for a report's header."""
    if not noise:
        return "Machine load: not recorded (a run from before the bench recorded it)."
    verdict = ("**NOISY**: something else used the CPUs during this run; read only its same-run ratios"
               if noise["noisy"] else "quiet")
    return (f"Machine load: {verdict} (with the bench idle, others used at most {noise['max_background_cpus']:.2f} "
            f"CPUs in {len(noise['samples'])} samples before and after each measurement, threshold "
            f"{noise['busy_threshold_cpus']:.2f}; 1-minute load average at most {noise['max_load_average']:.2f}, "
            "the bench's own load included).")
