"""Stopping a container under load: `docker stop` a few seconds into a wrk run, then the requests the
server answered (its access log) against those the client received. Every one answered must be received."""

import threading
import time

from images.docker import docker

from .containers import running, stop
from .load import wrk

CONNECTIONS = 64  # the load it is stopped under


def stop_under_load(tag: str, seconds: int = 8, stop_after: float = 3.0, options: tuple[str, ...] = ()) -> dict:
    with running(tag, *options) as (name, port):
        outcome = {}

        def stop_later() -> None:
            time.sleep(stop_after)
            outcome["stopped"] = stop(name)

        stopper = threading.Thread(target=stop_later)
        stopper.start()
        received = wrk(port, seconds, CONNECTIONS, path="/hello/stop")
        stopper.join()
        logs = docker("logs", name, quiet=True)
        exit_code = outcome["stopped"].exit_code
    answered = sum(" GET /hello/stop 200 " in line for line in logs.stdout.splitlines())
    return {"exit_code": exit_code, "stop_seconds": outcome["stopped"].seconds, "answered_by_server": answered,
            "received_by_client": received["requests"], "lost": answered - received["requests"],
            "client_socket_errors": received["socket_errors"], "client_non_2xx": received["non_2xx"],
            "server_said": next((line for line in logs.stderr.splitlines() if "Stopped" in line), ""),
            "ok": exit_code == 0 and answered == received["requests"]}
