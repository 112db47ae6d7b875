"""The real server, except that each forked worker, before it builds its app, touches a file in
START_DIR and waits until START_DIR/go exists: a test can kill the supervisor while workers start."""

import os
import sys
import time
from pathlib import Path

from service import server

SUPERVISOR = os.getpid()
real_create_app = server.create_app


def create_app_once_told(environment):
    if os.getpid() != SUPERVISOR:
        start_dir = Path(os.environ["START_DIR"])
        (start_dir / f"starting-{os.getpid()}").touch()
        while not (start_dir / "go").exists():
            time.sleep(0.01)
    return real_create_app(environment)


if __name__ == "__main__":
    server.create_app = create_app_once_told
    sys.exit(server.main())
