"""The twin of waitress/adjustments.py: the service's settings as waitress's Adjustments, the limits, and the
open-file limit they need."""

import logging
import resource
import socket

from waitress.adjustments import Adjustments

from ..config import Settings

log = logging.getLogger("service")

MAX_HEADER_BYTES = 16 * 1024  # request line and headers; more is a 431
MAX_BODY_BYTES = 64 * 1024  # no endpoint takes a body; more is a 413
SELECT_CEILING = 1024  # FD_SETSIZE: select() cannot watch descriptors numbered higher
SPARE_DESCRIPTORS = 24  # stdio, listening sockets, waitress's wake-up pipes, a margin


def listen_addresses(host: str, port: int) -> list[str]:
    """waitress `listen` entries; '*' means IPv4 everywhere, plus IPv6 where this host has it."""
    if host != "*":
        return [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    addresses = [f"0.0.0.0:{port}"]
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
        addresses.append(f"[::]:{port}")
    except OSError:
        pass
    return addresses


def fit_connection_limit(wanted: int) -> int:
    """Raise the soft open-file limit toward what `wanted` connections need; if the hard limit is lower,
    serve fewer connections (said once) rather than fail accept() with EMFILE under load."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + SPARE_DESCRIPTORS
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    available = soft if soft != resource.RLIM_INFINITY else needed
    if available >= needed:
        return wanted
    fitted = max(1, available - SPARE_DESCRIPTORS)
    log.warning("APP_CONNECTION_LIMIT=%d needs %d open files, but this process may open %d: serving at most %d "
                "connections. Raise the limit (docker run --ulimit nofile=%d) or lower APP_CONNECTION_LIMIT.",
                wanted, needed, available, fitted, needed)
    return fitted


def needs_poll(connection_limit: int) -> bool:
    """select() cannot watch descriptors numbered 1024 or more; poll() can."""
    return connection_limit + SPARE_DESCRIPTORS > SELECT_CEILING


def adjustments(settings: Settings, connection_limit: int) -> Adjustments:
    return Adjustments(
        listen=" ".join(listen_addresses(settings.host, settings.port)),
        threads=settings.threads,
        connection_limit=connection_limit,
        channel_timeout=settings.channel_timeout,
        asyncore_use_poll=needs_poll(connection_limit),
        max_request_header_size=MAX_HEADER_BYTES,
        max_request_body_size=MAX_BODY_BYTES,
        ident="",  # no Server header advertising the software
        expose_tracebacks=False,
    )
