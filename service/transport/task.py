"""The twin of waitress/task.py's WSGITask and ErrorTask: answering, and the access log."""

import time

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.task import ErrorTask, WSGITask

from ..answers import JSON_HEADERS, encode, error_payload
from ..healthcheck import HEALTHCHECK_AGENT
from ..logs import AccessLog
from .parser import HardenedParser
from .refusals import refusal_for

MAX_LOGGED_TARGET = 512  # characters of the request target in an access line (PIPE_BUF is 4096)
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def logged_field(text: str, limit: int) -> str:
    """A field of an access line: printable, never empty, at most `limit` characters (marked when cut)."""
    if not text:
        return "-"
    if len(text) <= limit and text.isascii() and text.isprintable() and " " not in text:
        return text  # the usual case, on every request's path: nothing to escape or cut
    raw = text.encode("latin-1", "replace")
    safe = "".join(chr(b) if 0x21 <= b <= 0x7E else f"%{b:02X}" for b in raw)
    if len(safe) > limit:
        return f"{safe[:limit]}...[{len(raw)}B]"
    return safe


class LoggedTask:
    """Times every answer and hands it to the server's access log (None: no access log)."""

    def service(self) -> None:
        started = time.perf_counter()
        try:
            super().service()
        finally:
            access_log = self.channel.server.access_log
            if access_log is not None and not self.is_own_healthcheck():
                self.log_answer(access_log, time.perf_counter() - started)

    def is_own_healthcheck(self) -> bool:
        """The image's HEALTHCHECK (every few seconds) is left out; a health check from elsewhere is not."""
        return (self.request.headers.get("USER_AGENT") == HEALTHCHECK_AGENT
                and self.channel.addr[0] in LOOPBACK)

    def log_answer(self, access_log: AccessLog, seconds: float) -> None:
        access_log(*logged_request(str(self.channel.addr[0]), *self.method_and_target()), self.status[:3], seconds)

    def method_and_target(self) -> tuple[str, str]:
        return sent_method_and_target(self.request)


def logged_request(client: str, method: str, target: str) -> tuple[str, str, str]:
    """The client, method and target as every log line carries them: printable, each cut to its limit."""
    return logged_field(client, 64), logged_field(method, 32), logged_field(target, MAX_LOGGED_TARGET)


def sent_method_and_target(request: HardenedParser) -> tuple[str, str]:
    """What the client sent, as far as it went. waitress sets `command` and `request_uri` only for a request
    line it parsed (and fakes `GET /` for a 431): a refused request is read from the line as it arrived."""
    if request.error is None:
        return request.command, request.request_uri
    parts = request.sent_line.split(b" ")
    method = parts[0].decode("latin-1") if parts else ""
    target = parts[1].decode("latin-1") if len(parts) > 1 else ""
    return method, target


class OneSendHeader:
    """waitress sends an answer's header and its body with a send() each: two syscalls, and two packets under
    TCP_NODELAY. The header is held back here and goes out with the first body bytes (or alone, at the end)."""

    def write(self, data: bytes) -> None:
        if self.wrote_header:
            return super().write(data)
        self.channel.hold_header_for_body()
        try:
            super().write(data)
        finally:
            self.channel.release_held_write()


class HardenedWSGITask(LoggedTask, OneSendHeader, WSGITask):
    def get_environment(self) -> dict:
        environ = super().get_environment()
        environ["PATH_INFO"] = self.request.path  # as sent: waitress would turn //health into /health
        return environ


class JSONErrorTask(LoggedTask, OneSendHeader, ErrorTask):
    def __init__(self, channel: HTTPChannel, request: HTTPRequestParser) -> None:
        super().__init__(channel, request)
        self.version = "1.1"  # waitress answers a 431 as HTTP/1.0, having given up on the request line

    def execute(self) -> None:
        refusal = refusal_for(self.request.error)
        body = encode(error_payload(refusal.error, refusal.message))
        self.status = f"{refusal.code} {refusal.reason}"
        self.response_headers.extend(JSON_HEADERS)
        self.set_close_on_finish()
        self.channel.linger_when_closing()
        self.content_length = len(body)
        self.write(body)
