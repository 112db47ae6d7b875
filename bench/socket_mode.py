"""`python -m bench.socket_mode shared|reuseport`: the service with APP_WORKERS>1, its listening socket
either shared (bound once before fork: what the service does) or one SO_REUSEPORT socket per worker
(the alternative the bench measures it against). Host processes only; never in an image."""

import functools
import sys

from service import server

if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) == 2 else ""
    if mode not in ("shared", "reuseport"):
        raise SystemExit("usage: python -m bench.socket_mode shared|reuseport")
    server.serve_with_workers = functools.partial(server.serve_with_workers, reuse_port=mode == "reuseport")
    sys.exit(server.main([]))
