"""The twin of waitress/task.py's ThreadedTaskDispatcher: the task queue, its "Task queue depth" warning
summarised."""

import logging
import math
import time
from collections.abc import Callable

from waitress.task import ThreadedTaskDispatcher

log = logging.getLogger("service")

QUEUE_SUMMARY_SECONDS = 60.0


class QueueDepthSummary:
    """Counts requests that waited for a worker thread and writes one line a period with the peak.

    The line means every worker thread was busy and requests waited for one: fine in a burst; if it
    appears every period, add threads, workers or replicas. The first queueing is said at once, with the
    time since counting began (start-up), not the period.
    """

    def __init__(self, period: float = QUEUE_SUMMARY_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.period, self.clock, self.peak, self.count = period, clock, 0, 0
        self.counting_since = clock()
        self.last_written = -math.inf

    def queued(self, depth: int) -> None:
        """One request waited; the event loop's next turn writes the line when one is due."""
        self.peak, self.count = max(self.peak, depth), self.count + 1

    def flush(self, force: bool = False) -> None:
        now = self.clock()
        if self.count and (force or now - self.last_written >= self.period):
            log.warning("all worker threads were busy: %d request(s) waited for one, at most %d at once, in the "
                        "last %.1fs. Persistent? Raise APP_THREADS or run more replicas.",
                        self.count, self.peak, now - self.counting_since)
            self.peak, self.count, self.last_written, self.counting_since = 0, 0, now, now


class CountingDispatcher(ThreadedTaskDispatcher):
    """waitress's task queue, but a queued request is counted, not logged: waitress calls
    `logger.warning("Task queue depth is %d")` for each one, and building that record (then filtering it
    away) was a tenth of the event loop's time under load."""

    def __init__(self, summary: QueueDepthSummary) -> None:
        super().__init__()
        self.summary = summary

    def add_task(self, task: object) -> None:
        with self.lock:
            self.queue.append(task)
            self.queue_cv.notify()
            depth = len(self.queue) - (len(self.threads) - self.stop_count - self.active_count)
        if depth > 0:
            self.summary.queued(depth)


def wait_until_threads_idle(dispatcher: ThreadedTaskDispatcher, seconds: float = 5.0) -> None:
    """waitress counts a thread as busy until it first waits for a task: a request that arrives before
    then is logged as queued. Start-up waits (briefly) for every thread to be waiting."""
    deadline = time.monotonic() + seconds
    while dispatcher.active_count > 0 and time.monotonic() < deadline:
        time.sleep(0.001)
