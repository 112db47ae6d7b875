"""The strict HTTP/1.1 request grammar the service holds every request to (RFC 9112), standard library only.

service/transport/ plugs these into waitress's parser; nothing here knows waitress. Each function or class
raises a `Malformed` (answered 400), `UnsupportedCoding` (501), `BodyTooLarge` (413) or `FieldsTooLarge`
(431) whose text says what was wrong.

- HeadScanner finds the end of a header block as its bytes arrive, looking at each byte once (waitress
  searched everything received so far on every read: quadratic under one-byte writes).
- check_request_line and check_fields: the request line, Host, Transfer-Encoding and field-name rules;
  connection_options reads Connection as the list it is.
- ChunkedBody decodes a chunked body strictly: CRLF only, hex sizes, RFC extensions, well-formed trailers;
  its limit counts data bytes, not framing.
"""

import ipaddress
import re
from collections.abc import Callable

TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
QUOTED_STRING = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
REQUEST_LINE = re.compile(rb"(" + TOKEN + rb") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
NOT_A_REQUEST_LINE = re.compile(rb"[^\x20-\x7e\r]")  # TLS, binary: no use waiting for a CRLF
OWS = rb"[ \t]*"  # optional whitespace is SP and HTAB only: never VT, FF or CR
TOKEN_LIST = re.compile(OWS + TOKEN + rb"(?:" + OWS + rb"," + OWS + TOKEN + rb")*" + OWS)
# RFC 3986 host [ ":" port ]: an IP literal in brackets, or a reg-name (which an IPv4 address also is).
REG_NAME = rb"(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*"
HOST = re.compile(rb"(?:\[(?P<literal>[0-9A-Za-z:.\-_~!$&'()*+,;=]+)\]|" + REG_NAME + rb")(?::[0-9]*)?")
IP_FUTURE = re.compile(rb"v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+")
# chunk-size [ chunk-ext ]: at most 16 hex digits; extensions `;name` or `;name=value`, no whitespace.
CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;" + TOKEN + rb"(?:=(?:" + TOKEN + rb"|" + QUOTED_STRING
                        + rb"))?)*")
FIELD_LINE = re.compile(TOKEN + rb":" + OWS + rb"(?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?"
                        + OWS)
MAX_CHUNK_LINE = 256  # bytes of a chunk-size line with its extensions, CRLF included
FRAMING_LOOKALIKES = (b"content_length", b"transfer_encoding")  # waitress drops names with "_"; some proxies
# read "_" as "-": the same request framed two ways
CR, LF = 13, 10


class Malformed(ValueError):
    """Not a well-formed HTTP/1.1 request: answered 400."""


class UnsupportedCoding(ValueError):
    """A well-formed Transfer-Encoding other than exactly `chunked`: answered 501."""


class BodyTooLarge(ValueError):
    """Over the body limit, counted in data bytes: answered 413."""


class FieldsTooLarge(ValueError):
    """Chunked trailers over the header limit: answered 431."""


# ---- the header block, as it arrives -----------------------------------------------------------------

class HeadScanner:
    """Finds where a request's header block ends (CRLF CRLF) as its bytes arrive, each byte looked at once.

    Empty lines (CRLF) before the request line are skipped, as RFC 9112 section 2.2 allows; any other
    whitespace there, a bare LF anywhere, or a request line holding bytes that are not text is Malformed at
    once. `work` counts the bytes looked at, so a test can prove the cost stays linear."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.start = 0  # where the request line begins, past the empty lines before it
        self.scanned = 0  # bytes of buffer already looked at
        self.line_end = -1  # where the request line's CRLF begins, once it arrived
        self.work = 0

    def feed(self, data: bytes) -> int:
        """Take the next bytes received; return how many of them complete the header block, or -1 (more
        needed: all of `data` was taken)."""
        before = len(self.buffer)
        self.buffer += data
        if self.scanned <= self.start and not self.skip_empty_lines():
            return -1
        end = self.scan()
        return -1 if end < 0 else end - before

    def skip_empty_lines(self) -> bool:
        """Skip CRLFs before the request line; False while what arrived is only those (or a CR)."""
        buffer = self.buffer
        while buffer.startswith(b"\r\n", self.start):
            self.start += 2
        self.scanned = self.start
        rest = len(buffer) - self.start
        if rest == 0 or (rest == 1 and buffer[self.start] == CR):
            return False
        if buffer[self.start] in b" \t\r\n":
            raise Malformed("Whitespace, a bare CR or a bare LF comes before the request line")
        return True

    def scan(self) -> int:
        """Look at the bytes not looked at yet; return the header block's end in buffer, or -1."""
        buffer, position = self.buffer, self.scanned
        while True:
            lf = buffer.find(b"\n", position)
            stop = len(buffer) if lf < 0 else lf + 1
            if self.line_end < 0 and NOT_A_REQUEST_LINE.search(buffer, position, len(buffer) if lf < 0 else lf):
                raise Malformed("The request line holds bytes that are not text")
            self.work += stop - position
            if lf < 0:
                self.scanned = len(buffer)
                return -1
            if buffer[lf - 1] != CR:
                raise Malformed("A line ends in a bare LF")
            if self.line_end < 0:
                self.line_end = lf - 1
            elif buffer[lf - 3:lf - 1] == b"\r\n":
                self.scanned = lf + 1
                return lf + 1
            position = lf + 1

    def begun(self) -> bool:
        """Some of a request arrived, beyond the empty lines that may come before one."""
        return len(self.buffer) > self.start

    def request_line(self, limit: int = 2048) -> bytes:
        """The request line as far as it arrived, for the access log."""
        end = len(self.buffer) if self.line_end < 0 else self.line_end
        return bytes(self.buffer[self.start:min(end, self.start + limit)])


# ---- the request line and the header fields ----------------------------------------------------------

def check_request_line(line: bytes) -> tuple[int, int]:
    """METHOD SP TARGET SP HTTP/x.y, the target printable ASCII; returns the version (major, minor)."""
    if b"\r" in line:
        raise Malformed("The request line holds a bare CR")
    match = REQUEST_LINE.fullmatch(line)
    if match is None:
        raise Malformed("The request line is not METHOD SP TARGET SP HTTP/x.y, or the target holds a space or a "
                        "control byte")
    if match[2] == b"*" and match[1] != b"OPTIONS":
        raise Malformed("The target * is only for OPTIONS (RFC 9112 section 3.2.4)")
    return int(match[3]), int(match[4])


def check_fields(version: tuple[int, int], fields: bytes) -> None:
    """The rules for header fields that waitress does not apply (RFC 9112 sections 3.2, 5.2, 6.1, 6.3)."""
    hosts: list[bytes] = []
    encodings: list[bytes] = []
    has_length = False
    for field in fields.split(b"\r\n"):
        if not field:
            continue
        if field[:1] in (b" ", b"\t"):
            raise Malformed("A header line is folded (starts with a space or tab)")
        name, _, value = field.partition(b":")
        name = name.lower()
        if name == b"host":
            hosts.append(value.strip(b" \t"))
        elif name == b"transfer-encoding":
            encodings.append(value)
        elif name == b"content-length":
            has_length = True
        elif name in FRAMING_LOOKALIKES:
            raise Malformed(f"A header is named {name.decode()} (with _ for -): send Content-Length or "
                            "Transfer-Encoding, spelt with hyphens")
    check_host(version, hosts)
    if encodings:
        check_transfer_encoding(version, b",".join(encodings), has_length)


def check_host(version: tuple[int, int], hosts: list[bytes]) -> None:
    if len(hosts) > 1:
        raise Malformed(f"The request has {len(hosts)} Host headers; send exactly one")
    if not hosts:
        if version >= (1, 1):
            raise Malformed("An HTTP/1.1 request must have a Host header")
        return
    if not valid_host(hosts[0]):
        raise Malformed("The Host header is not host[:port] (RFC 3986)")


def valid_host(value: bytes) -> bool:
    match = HOST.fullmatch(value)
    if match is None:
        return False
    literal = match["literal"]
    if literal is None:
        return True
    if IP_FUTURE.fullmatch(literal):
        return True
    try:
        ipaddress.IPv6Address(literal.decode("ascii"))
    except ValueError:
        return False
    return True


def check_transfer_encoding(version: tuple[int, int], encoding: bytes, has_length: bool) -> None:
    if version != (1, 1):
        raise Malformed("Transfer-Encoding is only allowed in HTTP/1.1")
    if has_length:
        raise Malformed("The request has both Transfer-Encoding and Content-Length")
    if encoding.strip(b" \t").lower() == b"chunked":
        return
    if not TOKEN_LIST.fullmatch(encoding):
        raise Malformed("Transfer-Encoding is malformed")
    codings = [coding.strip(b" \t").lower() for coding in encoding.split(b",")]
    if b"chunked" in codings and codings[-1] != b"chunked":
        raise Malformed("Transfer-Encoding has chunked, but not as the last coding")
    raise UnsupportedCoding(encoding.decode("latin-1"))


def connection_options(value: str) -> set[str]:
    """The options of a Connection field (or several, joined with commas), lower case."""
    return {option.strip(" \t").lower() for option in value.split(",")}


# ---- a chunked body ----------------------------------------------------------------------------------

class ChunkedBody:
    """Decodes a chunked body (RFC 9112 section 7.1) strictly, keeping its data with `keep`.

    Every line ends in CRLF; a chunk size is 1 to 16 hex digits, optionally followed by extensions
    `;name` or `;name=value` (token or quoted string, no whitespace), which are ignored; the data is followed
    by CRLF; trailer fields must be well-formed field lines (they are discarded). The limit counts data
    bytes, not the framing around them."""

    def __init__(self, limit: int, trailer_limit: int) -> None:
        self.limit, self.trailer_limit = limit, trailer_limit
        self.size = 0  # data bytes so far
        self.remaining = 0  # data bytes left in the current chunk
        self.line = bytearray()  # the line being received
        self.state = self.size_line
        self.trailer_bytes = 0
        self.completed = False

    def feed(self, data: bytes, keep: Callable[[bytes], None]) -> int:
        """Take what of `data` belongs to this body; return how many bytes that was."""
        position = 0
        while position < len(data) and not self.completed:
            position = self.state(data, position, keep)
        return position

    def read_line(self, data: bytes, position: int, limit: int) -> tuple[bytes | None, int]:
        """A whole line (without its CRLF) once it arrived, else None; and where reading stopped."""
        lf = data.find(b"\n", position)
        end = len(data) if lf < 0 else lf + 1
        self.line += data[position:end]
        if len(self.line) > limit:
            return self.over_limit(), end
        if lf < 0:
            return None, end
        line, self.line = bytes(self.line), bytearray()
        if not line.endswith(b"\r\n"):
            raise Malformed("A line of the chunked body ends in a bare LF")
        if b"\r" in line[:-2]:
            raise Malformed("A line of the chunked body holds a bare CR")
        return line[:-2], end

    def over_limit(self) -> None:
        if self.state == self.size_line:
            raise Malformed(f"A chunk-size line is over {MAX_CHUNK_LINE} bytes")
        raise FieldsTooLarge(f"The trailer section is over {self.trailer_limit} bytes")

    def size_line(self, data: bytes, position: int, keep: Callable[[bytes], None]) -> int:
        line, position = self.read_line(data, position, MAX_CHUNK_LINE)
        if line is None:
            return position
        match = CHUNK_LINE.fullmatch(line)
        if match is None:
            raise Malformed("A chunk-size line is not hex digits with optional ;name=value extensions")
        size = int(match[1], 16)
        if size == 0:
            self.state = self.trailer_line
        elif self.size + size >= self.limit:
            raise BodyTooLarge(f"The chunked body is {self.limit} bytes or more")
        else:
            self.size += size
            self.remaining, self.state = size, self.chunk_data
        return position

    def chunk_data(self, data: bytes, position: int, keep: Callable[[bytes], None]) -> int:
        piece = data[position:position + self.remaining]
        keep(piece)
        self.remaining -= len(piece)
        if not self.remaining:
            self.state = self.chunk_end
        return position + len(piece)

    def chunk_end(self, data: bytes, position: int, keep: Callable[[bytes], None]) -> int:
        taken = data[position:position + 2 - len(self.line)]
        self.line += taken
        if len(self.line) == 2:
            if self.line != b"\r\n":
                raise Malformed("A chunk's data is not followed by CRLF")
            self.line, self.state = bytearray(), self.size_line
        return position + len(taken)

    def trailer_line(self, data: bytes, position: int, keep: Callable[[bytes], None]) -> int:
        line, position = self.read_line(data, position, self.trailer_limit - self.trailer_bytes)
        if line is None:
            return position
        self.trailer_bytes += len(line) + 2
        if line == b"":
            self.completed = True
        elif not FIELD_LINE.fullmatch(line):
            raise Malformed("A trailer field is not NAME: value (or is folded)")
        return position
