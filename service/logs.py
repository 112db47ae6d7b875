"""Every line the service writes, as text (the default) or one JSON object per line (APP_LOG_FORMAT=json).

Both formats stamp each line in UTC with milliseconds and the zone (`2026-12-01T18:24:15.073Z`) and use
the same fields: `time`, `level`, `logger`, `message`; an access line adds `client`, `method`, `target`,
`status` and `duration_ms`; a traceback is the `traceback` field of its line (json) or follows its line
(text); with several workers, `pid` on every line and `worker` on a worker's. Every line is written with
one os.write (write_line): a line under PIPE_BUF (4 KiB) is never interleaved with another thread's or
worker's. Access lines are formatted by one f-string or one json.dumps each, with no logging record: they
are on every request's path.
"""

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable

ACCESS_LOGGER = "access"  # the `logger` field of access lines

# Fields every JSON line of this process carries: pid (and worker) once there are several workers.
process_fields: dict[str, int] = {}

AccessLog = Callable[[str, str, str, str, float], None]  # (client, method, target, status, seconds)


def write_line(line: str, descriptor: int = 1) -> None:
    """One os.write per line: no lock shared by the worker threads, no logging records on the hot path
    (about twice the requests/s under load here). A line under PIPE_BUF bytes is written whole, so lines
    from different threads or workers never interleave. A longer one (a long traceback) is finished if
    the pipe took only part of it."""
    data = line.encode("utf-8", "replace")
    with contextlib.suppress(OSError):  # a closed stdout must not turn answers into errors
        written = os.write(descriptor, data)
        while written < len(data):
            data = data[written:]
            written = os.write(descriptor, data)


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text: most lines share one


def utc_timestamp(seconds: float) -> str:
    """`2026-12-01T18:24:15.073Z`: UTC, milliseconds, the zone said."""
    global _second
    whole = int(seconds)
    cached, text = _second
    if cached != whole:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, text)
    return f"{text}.{int((seconds - whole) * 1000):03d}Z"


def text_access_line(client: str, method: str, target: str, status: str, seconds: float) -> str:
    return f"{utc_timestamp(time.time())} {client} {method} {target} {status} {seconds * 1000:.2f}ms\n"


def json_access_line(client: str, method: str, target: str, status: str, seconds: float) -> str:
    return json.dumps({"time": utc_timestamp(time.time()), "level": "INFO", "logger": ACCESS_LOGGER,
                       "message": f"{method} {target} {status}", "client": client, "method": method,
                       "target": target, "status": int(status), "duration_ms": round(seconds * 1000, 2),
                       **process_fields}) + "\n"


def access_log(log_format: str) -> AccessLog:
    """The access log for `log_format`: formats one answer's line and writes it to stdout."""
    line = json_access_line if log_format == "json" else text_access_line

    def log(client: str, method: str, target: str, status: str, seconds: float) -> None:
        write_line(line(client, method, target, status, seconds))
    return log


class TextFormatter(logging.Formatter):
    """`2026-12-01T18:24:15.073Z WARNING service: message`, a traceback on the lines after it."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{utc_timestamp(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line + "\n"


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line; a traceback is its `traceback` field. A record's
    `fields` (logging's extra=) are fields of the line too."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": utc_timestamp(record.created), "level": record.levelname, "logger": record.name,
                 "message": record.getMessage(), **getattr(record, "fields", {}), **process_fields}
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry) + "\n"


class LineHandler(logging.Handler):
    """Writes each formatted record with one os.write to stderr (logging's StreamHandler writes and
    flushes through a buffer, which can split a long record)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            write_line(self.format(record), sys.stderr.fileno())
        except Exception:  # as logging's own handlers do: a failing log line must not end the service
            self.handleError(record)


def configure(level: str, log_format: str) -> None:
    """Every record (the service's, waitress's, an uncaught exception's) to stderr in `log_format`."""
    handler = LineHandler()
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    uncaught = logging.getLogger("service")
    sys.excepthook = lambda kind, value, trace: uncaught.critical("uncaught exception",
                                                                  exc_info=(kind, value, trace))
    threading.excepthook = lambda hook: uncaught.critical(f"uncaught exception in thread {hook.thread.name}",
                                                          exc_info=(hook.exc_type, hook.exc_value,
                                                                    hook.exc_traceback))


def identify(pid: int, worker: int | None = None) -> None:
    """With several workers: every JSON line says which process (and which worker) wrote it."""
    process_fields.clear()
    process_fields["pid"] = pid
    if worker is not None:
        process_fields["worker"] = worker


def plain_error(message: str, log_format: str) -> None:
    """A failure before logging is set up (bad configuration, a port that cannot be bound): one line on
    stderr, `hello-api: ...` as text, an ERROR object as json."""
    if log_format == "json":
        line = json.dumps({"time": utc_timestamp(time.time()), "level": "ERROR", "logger": "service",
                           "message": message}) + "\n"
    else:
        line = f"hello-api: {message}\n"
    write_line(line, sys.stderr.fileno())
