"""The real server, except that building the app fails in every forked worker (not in the supervisor):
a worker that cannot start."""

import os
import sys

from service import server

SUPERVISOR = os.getpid()
real_create_app = server.create_app


def create_app_in_the_supervisor_only(environment):
    if os.getpid() != SUPERVISOR:
        raise RuntimeError("this worker cannot build its app")
    return real_create_app(environment)


if __name__ == "__main__":
    server.create_app = create_app_in_the_supervisor_only
    sys.exit(server.main())
