"""Several waitress processes on one port (APP_WORKERS > 1): how many, and the supervisor that runs them.

One waitress process is limited by its single I/O thread to about one core. With APP_WORKERS=N the
process the image starts binds the listening sockets, forks N workers that each serve them exactly as a
single process does, and supervises them:

- SIGTERM/SIGINT are forwarded to every worker, which drains as a single process does; a second signal
  is forwarded too (it skips the rest of the grace period). The supervisor exits 0 once every worker has
  finished cleanly, 3 when a worker cut requests short (and none failed otherwise); a worker still
  running at grace plus STOP_MARGIN_SECONDS is killed (exit 1).
- A worker that dies after it started serving is logged and started again, after a back-off that
  doubles with each death in a row (RESTART_BACKOFF_SECONDS), so a crash loop cannot spin a core.
- A worker that dies before it starts serving (its app cannot be built, for example) stops the whole
  service with one line and exit 1: starting it again would fail again.

The supervisor imports no waitress and serves nothing itself; the worker's life is the callable it is
given (service.server builds it). Stop signals are blocked around fork(), so a signal that arrives while
a worker is starting waits until the worker has installed its own handler.
"""

import contextlib
import fcntl
import logging
import math
import os
import select
import signal
import time
from collections.abc import Callable
from typing import NamedTuple

log = logging.getLogger("service")

MAX_WORKERS = 64
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
STOP_MARGIN_SECONDS = 2.0  # beyond the grace period, before a worker that has not exited is killed
RESTART_BACKOFF_SECONDS = (0.1, 10.0)  # first restart, ceiling; doubles per death in a row
STEADY_SECONDS = 30.0  # a worker that served this long resets the back-off
EXIT_OK, EXIT_FAILED, EXIT_REQUESTS_CUT_SHORT = 0, 1, 3  # 3: requests were cut short by the stop

# A worker's life: (its number from 1, a callable to say "serving", a callable that is true once the
# supervisor is gone) -> exit status. Runs in the child.
WorkerMain = Callable[[int, Callable[[], None], Callable[[], bool]], int]


# ---- how many ----------------------------------------------------------------------------------------

def cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> int | None:
    """CPUs the cgroup quota allows (docker run --cpus), rounded up; None when there is no quota.
    cgroup v2 writes `QUOTA PERIOD` (or `max PERIOD`) in cpu.max; v1, cpu.cfs_quota_us (-1: none)."""
    with contextlib.suppress(OSError, ValueError):
        quota, period = read(f"{root}/cpu.max").split()
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    with contextlib.suppress(OSError, ValueError):
        quota, period = int(read(f"{root}/cpu/cpu.cfs_quota_us")), int(read(f"{root}/cpu/cpu.cfs_period_us"))
        return None if quota <= 0 else max(1, math.ceil(quota / period))
    return None


def read(path: str) -> str:
    with open(path) as file:
        return file.read()


def cpus_allowed() -> int:
    """CPUs this process may run on (affinity: docker run --cpuset-cpus), capped by the cgroup quota."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    return max(1, min(affinity, quota) if quota else affinity)


def worker_count(setting: int | str) -> int:
    """APP_WORKERS as a number: `auto` is the CPUs allowed, at most MAX_WORKERS."""
    return min(MAX_WORKERS, cpus_allowed()) if setting == "auto" else int(setting)


# ---- the supervisor ----------------------------------------------------------------------------------

class Worker(NamedTuple):
    number: int
    pid: int
    ready_pipe: int  # the worker writes a byte when it serves; EOF first means it died starting
    started: float


def describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


class Supervisor:
    def __init__(self, count: int, worker_main: WorkerMain, grace: float,
                 release: Callable[[], None] = lambda: None) -> None:
        """`release`: called once when stopping (the supervisor's copies of the listening sockets close,
        so the port refuses connections once the last worker has closed its own)."""
        self.count, self.worker_main, self.grace, self.release = count, worker_main, grace, release
        self.released = False
        self.workers: dict[int, Worker] = {}  # pid -> worker
        self.ready: set[int] = set()  # pids that said they serve
        self.restarts: dict[int, float] = {}  # worker number -> when to start it again
        self.deaths_in_a_row = 0
        self.stop_signals = 0
        self.stop_deadline: float | None = None
        self.failed_to_start: str | None = None
        self.unclean_exits = 0
        self.cut_short_exits = 0

    # Signals: handlers only count and forward; the loop wakes through the wake-up pipe.
    def on_stop_signal(self, signum: int, frame: object) -> None:
        self.stop_signals += 1
        if self.stop_deadline is None:
            self.stop_deadline = time.monotonic() + self.grace + STOP_MARGIN_SECONDS
            self.restarts.clear()
        self.signal_workers(signum)

    def signal_workers(self, signum: int) -> None:
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def install(self) -> int:
        wake_read, wake_write = os.pipe()
        for end in (wake_read, wake_write):
            fcntl.fcntl(end, fcntl.F_SETFL, os.O_NONBLOCK)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        for signum in STOP_SIGNALS:
            signal.signal(signum, self.on_stop_signal)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler, so that it wakes the loop
        return wake_read

    # Starting a worker.
    def spawn(self, number: int) -> None:
        ready_read, ready_write = os.pipe()
        supervisor = os.getpid()  # read before the fork: a supervisor killed at any moment after it is noticed
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # the worker unblocks once it handles them
        try:
            pid = os.fork()
        except OSError as problem:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
            os.close(ready_read)
            os.close(ready_write)
            self.failed_to_start = f"worker {number} could not be started: {problem.strerror or problem}"
            return
        if pid == 0:
            os.close(ready_read)
            os._exit(self.run_child(number, ready_write, orphaned=lambda: os.getppid() != supervisor))
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        os.close(ready_write)
        self.workers[pid] = Worker(number, pid, ready_read, time.monotonic())

    def run_child(self, number: int, ready_write: int, orphaned: Callable[[], bool]) -> int:
        """In the forked worker: undo the supervisor's signal set-up, then live the worker's life."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for signum in STOP_SIGNALS:
            signal.signal(signum, signal.SIG_DFL)  # still blocked: the worker installs its own first

        def serving() -> None:
            with contextlib.suppress(OSError):
                os.write(ready_write, b"1")
                os.close(ready_write)

        try:
            return self.worker_main(number, serving, orphaned)
        except BaseException:  # a worker must never return into the supervisor's loop
            log.exception("worker %d failed", number)
            return EXIT_FAILED

    # The loop.
    def run(self) -> int:
        wake_read = self.install()
        for number in range(1, self.count + 1):
            if self.failed_to_start is None:
                self.spawn(number)
        while self.workers or (self.restarts and self.failed_to_start is None):
            if self.failed_to_start is not None and self.stop_deadline is None:
                self.stop_all()
            if self.stop_deadline is not None and not self.released:
                self.release()
                self.released = True
            self.wait(wake_read)
            self.reap()
            self.restart_due()
            self.kill_after_deadline()
        if not self.released:
            self.release()
        if self.failed_to_start is not None:
            log.error("%s; stopping the service. Its own error is above.", self.failed_to_start)
            return EXIT_FAILED
        if self.unclean_exits:
            return EXIT_FAILED
        return EXIT_REQUESTS_CUT_SHORT if self.cut_short_exits else EXIT_OK

    def stop_all(self) -> None:
        self.on_stop_signal(signal.SIGTERM, None)

    def wait(self, wake_read: int) -> None:
        now = time.monotonic()
        wakes = [t for t in [*self.restarts.values(), self.stop_deadline] if t is not None and t != math.inf]
        timeout = max(0.0, min(wakes) - now) if wakes else None
        pipes = {w.ready_pipe: pid for pid, w in self.workers.items() if pid not in self.ready}
        with contextlib.suppress(InterruptedError):
            readable, _, _ = select.select([wake_read, *pipes], [], [], timeout)
            for fd in readable:
                if fd == wake_read:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_read, 512)
                elif os.read(fd, 1):
                    self.ready.add(pipes[fd])

    def reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is not None:
                self.ended(worker, status)

    def ended(self, worker: Worker, status: int) -> None:
        os.close(worker.ready_pipe)
        served = worker.pid in self.ready
        self.ready.discard(worker.pid)
        if self.stop_deadline is not None:  # stopping: a clean drain ends with 0
            cut_short = os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_REQUESTS_CUT_SHORT
            self.cut_short_exits += cut_short  # the worker has said which requests, itself
            self.unclean_exits += status != 0 and not cut_short
            if status != 0 and not cut_short:
                log.warning("worker %d (pid %d) stopped with %s", worker.number, worker.pid, describe(status))
            return
        if not served:
            self.failed_to_start = (f"worker {worker.number} (pid {worker.pid}) ended before it served "
                                    f"({describe(status)})")
            return
        lived = time.monotonic() - worker.started
        self.deaths_in_a_row = 1 if lived >= STEADY_SECONDS else self.deaths_in_a_row + 1
        first, ceiling = RESTART_BACKOFF_SECONDS
        delay = min(ceiling, first * 2 ** (self.deaths_in_a_row - 1))
        log.error("worker %d (pid %d) died (%s) after %.1fs; starting it again in %.1fs", worker.number,
                  worker.pid, describe(status), lived, delay)
        self.restarts[worker.number] = time.monotonic() + delay

    def restart_due(self) -> None:
        now = time.monotonic()
        for number, when in list(self.restarts.items()):
            if when <= now and self.stop_deadline is None:
                del self.restarts[number]
                self.spawn(number)

    def kill_after_deadline(self) -> None:
        if self.stop_deadline is None or time.monotonic() < self.stop_deadline or not self.workers:
            return
        log.error("%d worker(s) still running %.1fs after the stop signal: killing them", len(self.workers),
                  self.grace + STOP_MARGIN_SECONDS)
        self.signal_workers(signal.SIGKILL)
        self.stop_deadline = math.inf  # killed once; the loop now only reaps
