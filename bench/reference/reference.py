"""The reference image's entry point: the project's app under gunicorn (gthread) or granian (WSGI).

SERVER=gunicorn|granian, WORKERS processes, THREADS threads each (gunicorn; granian's WSGI blocking
threads). Both write an access line per request, as waitress does here, so all three do the same work.
"""

import os
import sys

from service.app import create_app

app = create_app(os.environ.get("APP_ENV", "development"))


def command(server: str, workers: str, threads: str) -> list[str]:
    if server == "gunicorn":
        return [sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", workers,
                "--threads", threads, "--bind", "0.0.0.0:5000", "--access-logfile", "-", "reference:app"]
    if server == "granian":
        return [sys.executable, "-m", "granian", "--interface", "wsgi", "--host", "0.0.0.0", "--port", "5000",
                "--workers", workers, "--blocking-threads", threads, "--access-log", "reference:app"]
    raise SystemExit(f"SERVER={server!r}: expected gunicorn or granian")


if __name__ == "__main__":
    argv = command(os.environ.get("SERVER", "gunicorn"), os.environ.get("WORKERS", "1"),
                   os.environ.get("THREADS", "8"))
    print("reference server: " + " ".join(argv[1:]), file=sys.stderr, flush=True)
    os.execv(argv[0], argv)
