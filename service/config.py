"""Settings from the environment: every variable, its default and what it allows, in one table."""

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple


class ConfigError(ValueError):
    """A variable holds a value the service cannot use; the message says which and what is allowed."""


class Settings(NamedTuple):  # not a dataclass: importing dataclasses costs 1.5 MiB of resident memory
    environment: str = "development"
    port: int = 5000
    host: str = "*"
    threads: int = 8  # waitress's default is 4; 8 measured a third of its p99 at 64 connections (README, Tuning)
    connection_limit: int = 1000
    channel_timeout: int = 60
    shutdown_grace: float = 5.0
    log_level: str = "INFO"


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


def environment_name(text: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", text):
        return text
    raise ValueError("1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")


def listen_host(text: str) -> str:
    if text == "*":
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError("'*' (all interfaces) or an IP address such as 0.0.0.0, 127.0.0.1 or ::") from None


def log_level(text: str) -> str:
    if text.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"):
        return text.upper()
    raise ValueError("one of DEBUG, INFO, WARNING, ERROR")


# variable -> (Settings field, parser). The README's configuration table mirrors this one.
VARIABLES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "APP_ENV": ("environment", environment_name),
    "APP_PORT": ("port", whole_number(1, 65535)),
    "APP_HOST": ("host", listen_host),
    "APP_THREADS": ("threads", whole_number(1, 256)),
    "APP_CONNECTION_LIMIT": ("connection_limit", whole_number(10, 100_000)),
    "APP_CHANNEL_TIMEOUT": ("channel_timeout", whole_number(1, 3600)),
    "APP_SHUTDOWN_GRACE": ("shutdown_grace", seconds(0, 60)),
    "APP_LOG_LEVEL": ("log_level", log_level),
}


def load(environ: Mapping[str, str]) -> Settings:
    """Read every APP_* variable; unset ones keep their default. Raises ConfigError on the first bad one."""
    values = {}
    for variable, (field, parse) in VARIABLES.items():
        if variable not in environ:
            continue
        text = environ[variable]
        try:
            values[field] = parse(text)
        except ValueError as allowed:
            raise ConfigError(f"{variable}={text!r} is not valid: expected {allowed}. "
                              f"Fix or unset {variable}.") from None
    return Settings(**values)
