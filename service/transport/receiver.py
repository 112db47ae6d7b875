"""The twin of waitress/receiver.py's ChunkedReceiver: chunked bodies framed by http_parser.ChunkedBody."""

from waitress.buffers import OverflowableBuffer

from ..http_parser import BodyTooLarge, ChunkedBody, FieldsTooLarge, Malformed
from .refusals import Refusal, refusal_for_problem


class StrictChunkedReceiver:
    """waitress's body-receiver interface around http_parser.ChunkedBody (waitress's ChunkedReceiver takes
    an LF for a line end, empty lines for chunk sizes and anything up to CRLF CRLF for trailers, and its
    limit counts the framing)."""

    completed = False
    error: Refusal | None = None

    def __init__(self, buf: OverflowableBuffer, max_body_bytes: int, max_trailer_bytes: int) -> None:
        self.buf = buf
        self.body = ChunkedBody(max_body_bytes, max_trailer_bytes)

    def __len__(self) -> int:
        return len(self.buf)

    def received(self, data: bytes) -> int:
        try:
            consumed = self.body.feed(data, self.buf.append)
        except (Malformed, BodyTooLarge, FieldsTooLarge) as problem:
            self.error = refusal_for_problem(problem)
            return len(data)
        self.completed = self.body.completed
        return consumed

    def getfile(self):  # a file object of waitress's buffer
        return self.buf.getfile()

    def getbuf(self) -> OverflowableBuffer:
        return self.buf
