"""Settings from the environment: every variable, its default and what it allows, in one table."""

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

PREFIX = "APP_"
SUGGESTION_CUTOFF = 0.7  # difflib ratio of the names after APP_: PROT~PORT 0.75 is suggested, FOO~PORT 0.29 not


class ConfigError(ValueError):
    """A variable holds a value the service cannot use; the message says which and what is allowed."""


class Settings(NamedTuple):  # not a dataclass: importing dataclasses costs 1.5 MiB of resident memory
    environment: str = "development"
    port: int = 5000
    host: str = "*"
    threads: int = 8  # waitress's default is 4; what each measured: bench/README.md, Tuning
    connection_limit: int = 1000
    channel_timeout: int = 60
    receive_timeout: float = 5.0
    shutdown_grace: float = 5.0
    log_level: str = "INFO"
    log_format: str = "text"
    workers: int | str = 1  # or "auto": resolved at start by service.workers.worker_count
    reuse_port: bool = False  # with workers: one SO_REUSEPORT listening socket each, not one shared
    wsgi: str = ""  # MODULE:NAME or MODULE:FACTORY() of the app to serve; empty: hello-api's own
    health_path: str = "/health"  # what the image's health check GETs


def whole_number(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if re.fullmatch(r"[0-9]{1,6}", text) and low <= int(text) <= high:
            return int(text)
        raise ValueError(f"a whole number from {low} to {high}")
    return parse


def seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        if re.fullmatch(r"[0-9]{1,4}(\.[0-9]{1,3})?", text) and low <= float(text) <= high:
            return float(text)
        raise ValueError(f"a number of seconds from {low:g} to {high:g}, such as 2.5")
    return parse


def worker_setting(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return whole_number(1, 64)(text)
    except ValueError:
        raise ValueError("'auto' (the CPUs this process may use) or a whole number from 1 to 64") from None


def environment_name(text: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text):
        return text
    raise ValueError("1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")


LISTEN_HOST_ALLOWED = "'*' (all interfaces) or an IP address such as 0.0.0.0, 127.0.0.1 or ::"


def listen_host(text: str) -> str:
    if text == "*":
        return text
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(LISTEN_HOST_ALLOWED) from None
    unbindable = unbindable_reason(address)
    if unbindable:
        raise ValueError(f"{LISTEN_HOST_ALLOWED}; {text} is {unbindable}")
    return str(address)


def unbindable_reason(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Why a listening socket cannot be bound to `address`, or "" when it may be."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return f"an IPv4-mapped IPv6 address, which a listening socket cannot bind: write {address.ipv4_mapped}"
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return "an address with a zone (%...), which the listener cannot take: write it without the zone"
    if address.is_multicast or address == ipaddress.IPv4Address("255.255.255.255"):
        return "a multicast or broadcast address, which a TCP listener cannot bind: name one of this host's"
    return ""


def log_level(text: str) -> str:
    if text.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"):
        return text.upper()
    raise ValueError("one of DEBUG, INFO, WARNING, ERROR")


SWITCH = {"true": True, "on": True, "yes": True, "1": True, "false": False, "off": False, "no": False, "0": False}


def switch(text: str) -> bool:
    try:
        return SWITCH[text.lower()]
    except KeyError:
        raise ValueError("true or false (or on/off, yes/no, 1/0; any case)") from None


LOG_FORMATS = ("text", "json")


def log_format(text: str) -> str:
    if text in LOG_FORMATS:
        return text
    raise ValueError("text (one line per event, the default) or json (one JSON object per line)")


# A module's dotted name, a colon, an attribute's dotted name, and () when it is a factory to call.
WSGI_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*(?:\(\))?", re.ASCII)


def wsgi_name(text: str) -> str:
    if text == "" or WSGI_NAME.fullmatch(text):  # empty, as an image's default build argument leaves it: hello-api
        return text
    raise ValueError("MODULE:NAME, or MODULE:FACTORY() for a function that returns the app "
                     "(myapp.web:app, myapp:create_app()), or empty for hello-api")


def health_path(text: str) -> str:
    if text.startswith("/") and len(text) <= 256 and all(33 <= ord(c) < 127 for c in text):
        return text
    raise ValueError("a path starting with /, 1-256 printable ASCII characters, no spaces")


class Variable(NamedTuple):
    field: str  # the Settings field it sets
    parse: Callable[[str], Any]
    allowed: str  # for --help
    purpose: str  # for --help


# The README's configuration table and `python -m service --help` both mirror this one.
VARIABLES: dict[str, Variable] = {
    "APP_ENV": Variable("environment", environment_name, "1-64 of A-Z a-z 0-9 . _ -, a letter or digit first",
                        "echoed as 'environment' in every successful answer"),
    "APP_PORT": Variable("port", whole_number(1, 65535), "1-65535", "TCP port"),
    "APP_HOST": Variable("host", listen_host, "'*' or an IP address",
                         "'*': 0.0.0.0, plus [::] where the host has IPv6"),
    "APP_THREADS": Variable("threads", whole_number(1, 256), "1-256", "worker threads"),
    "APP_CONNECTION_LIMIT": Variable("connection_limit", whole_number(10, 100_000), "10-100000",
                                     "client connections; when full, the one waiting longest for a request is closed"),
    "APP_CHANNEL_TIMEOUT": Variable("channel_timeout", whole_number(1, 3600), "1-3600 s",
                                    "an idle keep-alive connection is closed after this"),
    "APP_RECEIVE_TIMEOUT": Variable("receive_timeout", seconds(0.5, 300), "0.5-300 s",
                                    "a request must arrive whole (headers and body) within this"),
    "APP_SHUTDOWN_GRACE": Variable("shutdown_grace", seconds(0, 60), "0-60 s",
                                   "on SIGTERM/SIGINT, time for received requests to finish"),
    "APP_LOG_LEVEL": Variable("log_level", log_level, "DEBUG INFO WARNING ERROR",
                              "WARNING: no access log; ERROR: no warnings either. Start/stop lines: always"),
    "APP_LOG_FORMAT": Variable("log_format", log_format, "text json",
                               "json: one object per line (time level logger message ...); README, Logs"),
    "APP_WORKERS": Variable("workers", worker_setting, "'auto' or 1-64",
                            "waitress processes on the port; auto: CPUs allowed (affinity, cgroup quota)"),
    "APP_REUSE_PORT": Variable("reuse_port", switch, "true false (on off)",
                               "with 2+ workers: each binds its own SO_REUSEPORT socket; false: one shared socket"),
    "APP_WSGI": Variable("wsgi", wsgi_name, "MODULE:NAME or MODULE:FACTORY()",
                         "the WSGI app to serve, imported from the working directory; unset or empty: hello-api"),
    "APP_HEALTH_PATH": Variable("health_path", health_path, "a path starting with /",
                                "what the health check GETs: hello-api's answers healthy JSON, another app any 2xx"),
}


def load(environ: Mapping[str, str]) -> Settings:
    """Read every APP_* variable; unset ones keep their default. Raises ConfigError on the first bad one."""
    values = {}
    for name, variable in VARIABLES.items():
        if name not in environ:
            continue
        text = environ[name]
        try:
            values[variable.field] = variable.parse(text)
        except ValueError as allowed:
            raise ConfigError(f"{name}={text!r} is not valid: expected {allowed}. "
                              f"Fix or unset {name}.") from None
    return Settings(**values)


def requested_log_format(environ: Mapping[str, str]) -> str:
    """APP_LOG_FORMAT if valid, else the default: the format of an error found before settings exist."""
    requested = environ.get("APP_LOG_FORMAT", "")
    return requested if requested in LOG_FORMATS else Settings().log_format


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One warning per APP_* name this service does not read, naming a known one only when it is close
    (the names compared without the APP_ prefix, which every one shares)."""
    unknown = sorted(name for name in environ if name.startswith(PREFIX) and name not in VARIABLES)
    if not unknown:
        return []
    import difflib  # only when there is something to suggest: it is not needed to serve

    warnings = []
    for name in unknown:
        close = difflib.get_close_matches(name.removeprefix(PREFIX), [v.removeprefix(PREFIX) for v in VARIABLES],
                                          n=1, cutoff=SUGGESTION_CUTOFF)
        hint = f"did you mean {PREFIX}{close[0]}?" if close else f"known: {', '.join(VARIABLES)}"
        warnings.append(f"{name} is not a setting of this service and is ignored; {hint}")
    return warnings


USAGE_NOTES = """\
Logs: access lines on stdout, everything else on stderr, each line one write, stamped in UTC
(2026-12-01T18:24:15.073Z). APP_LOG_FORMAT=json writes one object per line: time, level, logger,
message; access lines (logger access) add client, method, target, status, duration_ms; a traceback
is the traceback field; with several workers, pid on every line and worker on a worker's.

Exit status: 0 after a stop signal, every received request answered; 1 when the port cannot be bound
(or, with workers, a worker fails); 2 for an invalid value or argument; 3 after a stop that cut
received requests short (the grace period ran out, or a second signal).
"""


def usage() -> str:
    """`--help`: every variable with its default and what it allows, from the table above."""
    defaults = Settings()
    shown = {name: getattr(defaults, v.field) for name, v in VARIABLES.items()}
    rows = [f"  {name:<22} default {'(unset)' if shown[name] == '' else shown[name]!s:<12} allowed: {v.allowed}\n"
            f"  {'':<22} {v.purpose}" for name, v in VARIABLES.items()]
    return ("usage: python -m service [--help | --version]\n\n"
            "Serves hello-api (GET /health and GET /hello/<name>, JSON), or the WSGI app APP_WSGI names.\n"
            "Configured only by the environment:\n\n"
            + "\n".join(rows) + "\n\n" + USAGE_NOTES)
