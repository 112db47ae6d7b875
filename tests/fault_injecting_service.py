"""The real server with a fault injected into one path of the transport (FAULT_IN names it), for the
connections that send the marker FAULT_MARKER; every other connection is served as usual
(tests/test_connection_faults.py).

A connection is marked when bytes it sends hold the marker; from then on the chosen path raises InjectedFault
for it. The paths are those the service adds to waitress or overrides.
"""

import os
import sys

from service import server
from service.transport.channel import HardenedChannel

FAULT_MARKER = b"X-Inject-Fault"


class InjectedFault(RuntimeError):
    pass


def raising_when_marked(method_name: str):
    method = getattr(HardenedChannel, method_name)

    def raising(self, *args, **kwargs):
        if getattr(self, "marked", False):
            raise InjectedFault(f"deliberate fault in HardenedChannel.{method_name}")
        return method(self, *args, **kwargs)
    return raising


def marking(received):
    def receive(self, data: bytes) -> bool:
        if FAULT_MARKER in data:
            self.marked = True
        return received(self, data)
    return receive


PATHS = {  # FAULT_IN -> the method that raises
    "reading": "received",
    "asking-ready": "readable",
    "writing": "handle_write",
    "timing-out": "time_out",
    "closing": "close_now",  # the lingering close's end, eviction and the drain all close through it
    "pipelining": "parse_ahead",
}


if __name__ == "__main__":
    method_name = PATHS[os.environ["FAULT_IN"]]
    setattr(HardenedChannel, method_name, raising_when_marked(method_name))
    HardenedChannel.received = marking(HardenedChannel.received)
    sys.exit(server.main())
