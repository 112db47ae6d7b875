"""The twin of waitress/parser.py's HTTPRequestParser: the header block found by http_parser.HeadScanner,
held to http_parser's rules, then parsed by waitress; a strict chunked receiver (receiver.py)."""

from waitress.adjustments import Adjustments
from waitress.parser import HTTPRequestParser, ParsingError

from ..http_parser import (
    HeadScanner,
    Malformed,
    UnsupportedCoding,
    check_fields,
    check_request_line,
    connection_options,
)
from .receiver import StrictChunkedReceiver
from .refusals import Refusal, bad_request, headers_too_large, refusal_for_problem


class HardenedParser(HTTPRequestParser):
    """waitress's parser, fed the header block once it is whole (found by http_parser.HeadScanner, which
    looks at each byte once and refuses a bare LF at once), held to http_parser's rules, with a strict
    chunked receiver."""

    refusal: Refusal | None = None

    def __init__(self, adj: Adjustments) -> None:
        super().__init__(adj)
        self.head = HeadScanner()

    @property
    def sent_line(self) -> bytes:
        """The request line as far as it arrived, for the access log."""
        return self.head.request_line()

    def begun(self) -> bool:
        return self.headers_finished or self.head.begun()

    def received(self, data: bytes) -> int:
        if self.error is not None or self.completed:
            return len(data) if self.error is not None else 0
        if self.body_rcv is not None:
            return self.received_body(data)
        try:
            taken = self.head.feed(data)
        except Malformed as problem:
            return self.refuse(bad_request(str(problem)), len(data))
        if taken < 0:  # more to come, unless it is over the limit already (empty lines before it count)
            if len(self.head.buffer) < self.adj.max_request_header_size:
                return len(data)
            return self.refuse(headers_too_large(), len(data))
        # Whole: waitress parses it, once (and answers 431 if it is over the limit).
        block = bytes(self.head.buffer[self.head.start:len(self.head.buffer) - len(data) + taken])
        self.head.work += len(block)
        super().received(block)
        if self.refusal is not None:  # waitress turns every parse error into its own 400
            self.error = self.refusal
        return taken

    def received_body(self, data: bytes) -> int:
        """waitress's, without its body limit (which counts chunk framing: the receivers apply it)."""
        receiver = self.body_rcv
        consumed = receiver.received(data)
        if receiver.error:
            self.error, self.completed = receiver.error, True
        elif receiver.completed:
            self.completed = True
            if self.chunked:  # the app sees a body of known length, as in waitress
                self.headers["CONTENT_LENGTH"] = str(len(receiver))
        return consumed

    def refuse(self, refusal: Refusal, consumed: int) -> int:
        """Refused while parsing: the request ends here, its head counted as read."""
        self.give_up(refusal)
        self.headers_finished = True
        return consumed

    def give_up(self, refusal: Refusal) -> None:
        """The request ends with `refusal` as its answer, however much of it arrived."""
        self.error = self.refusal = refusal
        self.completed = True

    def parse_header(self, header_plus: bytes) -> None:
        line, _, fields = header_plus.partition(b"\r\n")
        try:
            version = check_request_line(line)
            if version not in ((1, 0), (1, 1)):
                raise self.refused(Refusal(505, "HTTP Version Not Supported", "http_version_not_supported",
                                           "Only HTTP/1.0 and HTTP/1.1 are served; send HTTP/1.1."))
            check_fields(version, fields)
        except (Malformed, UnsupportedCoding) as problem:
            raise self.refused(refusal_for_problem(problem)) from None
        try:
            super().parse_header(header_plus)
        except ValueError as problem:  # urlsplit's, for targets such as http://[
            raise self.refused(bad_request(f"The request target is not a valid URI ({problem})")) from None
        if self.chunked:
            self.body_rcv = StrictChunkedReceiver(self.body_rcv.getbuf(), self.adj.max_request_body_size,
                                                  self.adj.max_request_header_size)
        self.read_connection_options()

    def read_connection_options(self) -> None:
        """waitress compares Connection with exactly `close` (HTTP/1.1) or `keep-alive` (HTTP/1.0), here and
        in its task: `close, close`, or a second Connection field, kept the connection open. Read as a list."""
        options = connection_options(self.headers.get("CONNECTION", ""))
        if "close" in options:
            self.headers["CONNECTION"], self.connection_close = "close", True
        elif "keep-alive" in options and self.version == "1.0":
            self.headers["CONNECTION"], self.connection_close = "keep-alive", False

    def refused(self, refusal: Refusal) -> ParsingError:
        self.refusal = refusal
        return ParsingError(refusal.message)
