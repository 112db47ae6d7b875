"""Every error answer the transport gives: its status, JSON `error` code and advice. The twin of waitress's
error classes (waitress/utilities.py: BadRequest, RequestHeaderFieldsTooLarge, RequestEntityTooLarge, ...),
which answer in text/plain; refusal_for maps theirs onto these."""

from waitress.utilities import Error

from ..answers import INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE
from ..http_parser import BodyTooLarge, FieldsTooLarge, UnsupportedCoding
from .adjustments import MAX_BODY_BYTES, MAX_HEADER_BYTES


class Refusal(Error):
    """An error answer: HTTP status, the JSON `error` code, and a message that says what to do."""

    def __init__(self, code: int, reason: str, error: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.error, self.message = code, reason, error, message


def bad_request(problem: str) -> Refusal:
    return Refusal(400, "Bad Request", "bad_request",
                   f"{problem}. Send one well-formed HTTP/1.1 request: METHOD /path HTTP/1.1, CRLF line ends, "
                   "a percent-encoded path.")


def transfer_encoding_not_supported() -> Refusal:
    return Refusal(501, "Not Implemented", "transfer_encoding_not_supported",
                   "Transfer-Encoding other than chunked is not supported; send no body (or a chunked one).")


def body_too_large() -> Refusal:
    return Refusal(413, "Content Too Large", "body_too_large",
                   f"The request body is {MAX_BODY_BYTES} bytes or more; no endpoint takes a body: send none.")


def headers_too_large() -> Refusal:
    return Refusal(431, "Request Header Fields Too Large", "headers_too_large",
                   f"The request line and headers (or the chunked trailers) are {MAX_HEADER_BYTES} bytes or more; "
                   "send fewer or smaller headers.")


def request_timeout(seconds: float) -> Refusal:
    return Refusal(408, "Request Timeout", "request_timeout",
                   f"The request did not arrive whole within {seconds:g} s (APP_RECEIVE_TIMEOUT); send it at once, "
                   "on a new connection.")


def refusal_for(error: Error) -> Refusal:
    """waitress's own errors, as the service answers them."""
    if isinstance(error, Refusal):
        return error
    detail = str(error.body).rstrip(".")
    if error.code == 413:
        return body_too_large()
    if error.code == 431:
        return headers_too_large()
    if error.code == 501:
        return transfer_encoding_not_supported()
    if error.code == 400:
        return bad_request(detail)
    return Refusal(500, "Internal Server Error", INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE)


def refusal_for_problem(problem: ValueError) -> Refusal:
    """http_parser's refusals, as the service answers them."""
    if isinstance(problem, UnsupportedCoding):
        return transfer_encoding_not_supported()
    if isinstance(problem, BodyTooLarge):
        return body_too_large()
    if isinstance(problem, FieldsTooLarge):
        return headers_too_large()
    return bad_request(str(problem))
