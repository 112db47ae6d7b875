"""HTTP hardening, second round (issue 20), with raw sockets against `python -m service`: chunked framing, the
body limit in data bytes, Expect: 100-continue, Host, stray CR and whitespace, Transfer-Encoding whitespace,
the 408, RFC 9112's other "MUST reject" rules, and a header parse whose cost stays linear.

Every refusal is checked the same way: the exact status in the service's JSON form, the connection closed
after it, a valid request sent behind the bad one in the same write never answered, and one access line per
refusal."""

import pytest
from raw_http import (
    access_lines,
    address,
    assert_json_error,
    connect,
    exchange,
    parse_answers,
    read_until_closed,
    request,
)

AFTER = b"GET /hello/after HTTP/1.1\r\nHost: test\r\n\r\n"  # sent behind every bad request: must go unanswered
CHUNKED = b"POST /health HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"


def logged_statuses(out: str) -> list[str]:
    """The status of each access line but the start-up health probe's. A line is written once its answer is
    sent, so a request sent right after the probe's answer may be logged before the probe's own line."""
    lines = access_lines(out)
    probe = next((i for i, fields in enumerate(lines) if fields[2:5] == ["GET", "/health", "200"]), None)
    assert probe is not None, out
    return [fields[4] for i, fields in enumerate(lines) if i != probe]


def assert_each_refused(running, cases: dict[str, bytes], status: int, error: str) -> None:
    """Each case, followed by AFTER in the same write: one JSON refusal, then a close; then one access line
    with `status` per case, and none for AFTER."""
    for name, payload in cases.items():
        result = exchange(address(running), payload + AFTER, seconds=3)
        assert result.closed, f"{name}: the connection stayed open"
        assert len(result.answers) == 1, f"{name}: {result.raw[:400]!r}"
        assert_json_error(result.only, status, error)
        assert b"100 Continue" not in result.raw, name
        assert b"after" not in result.raw, f"{name}: the request behind the refused one was answered"
    _, out, _ = running.stop()
    assert logged_statuses(out) == [str(status)] * len(cases), out
    assert "/hello/after" not in out


def assert_each_served(running, cases: dict[str, bytes], status: int) -> None:
    """Each case is answered `status`, and AFTER behind it is answered too (the framing ended where it should)."""
    for name, payload in cases.items():
        result = exchange(address(running), payload + request("/hello/after", "GET", "Connection: close"), seconds=3)
        assert [a.status for a in result.answers] == [status, 200], f"{name}: {result.raw[:400]!r}"
        assert result.answers[1].json()["message"] == "Hello, after!"


@pytest.fixture
def server(start_service):
    return start_service({"APP_RECEIVE_TIMEOUT": "60"})  # an answer that waited for the timeout would not come


# ---- 1. chunked framing: CRLF only, hex sizes, RFC extensions, well-formed trailers --------------------

BAD_CHUNKED = {
    "bare-lf-after-last-chunk": CHUNKED + b"0\r\n\nGET /hello/hidden HTTP/1.1\r\nHost: h\r\n\r\n",
    "bare-lf-after-size": CHUNKED + b"5\nhello\r\n0\r\n\r\n",
    "bare-lf-after-extension": CHUNKED + b"5;a=b\nhello\r\n0\r\n\r\n",
    "bare-lf-after-data": CHUNKED + b"5\r\nhello\n0\r\n\r\n",
    "bare-lf-in-trailers": CHUNKED + b"0\r\nX-T: 1\n\r\n",
    "bare-lf-ends-trailers": CHUNKED + b"0\r\nX-T: 1\r\n\n",
    "empty-line-before-size": CHUNKED + b"\r\n5\r\nhello\r\n0\r\n\r\n",
    "nul-in-trailer": CHUNKED + b"0\r\nX-T: a\x00b\r\n\r\n",
    "bare-cr-in-trailer": CHUNKED + b"0\r\nX-T: a\rb\r\n\r\n",
    "bare-cr-after-size": CHUNKED + b"5\r\r\nhello\r\n0\r\n\r\n",
    "request-line-as-trailer": CHUNKED + b"0\r\nGET /hello/hidden HTTP/1.1\r\nHost: h\r\n\r\n",
    "folded-trailer": CHUNKED + b"0\r\nX-T: 1\r\n  2\r\n\r\n",
    "0x-prefix": CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n",
    "signed-size": CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n",
    "size-then-space": CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n",
    "17-hex-digits": CHUNKED + b"00000000000000005\r\nhello\r\n0\r\n\r\n",
    "space-before-extension": CHUNKED + b"5 ;a=b\r\nhello\r\n0\r\n\r\n",
    "extension-without-name": CHUNKED + b"5;=b\r\nhello\r\n0\r\n\r\n",
    "extension-unclosed-quote": CHUNKED + b'5;a="b\r\nhello\r\n0\r\n\r\n',
    "data-longer-than-size": CHUNKED + b"3\r\nhello\r\n0\r\n\r\n",
    "size-line-over-256-bytes": CHUNKED + b"5;" + b"a" * 300 + b"\r\nhello\r\n0\r\n\r\n",
}


def test_a_chunked_body_framed_other_than_strictly_is_400_and_nothing_behind_it_is_answered(server):
    assert_each_refused(server, BAD_CHUNKED, 400, "bad_request")


def test_well_formed_chunked_bodies_with_extensions_and_trailers_are_served_and_framed_exactly(server):
    assert_each_served(server, {
        "plain": CHUNKED + b"5\r\nhello\r\n0\r\n\r\n",
        "upper-hex-and-leading-zeros": CHUNKED + b"00A\r\n0123456789\r\n0\r\n\r\n",
        "extensions": CHUNKED + b'5;a;b=c;d="x \\" y"\r\nhello\r\n0;last\r\n\r\n',
        "trailers": CHUNKED + b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Empty:\r\n\r\n",
        "empty-body": CHUNKED + b"0\r\n\r\n",
    }, 405)


def test_chunked_trailers_over_16_kib_are_431(server):
    assert_each_refused(server, {"one-long-trailer": CHUNKED + b"0\r\nX-T: " + b"x" * 17_000 + b"\r\n\r\n",
                                 "many-trailers": CHUNKED + b"0\r\n" + b"X-T: 0123456789\r\n" * 1100 + b"\r\n"},
                        431, "headers_too_large")


# ---- issue 17 defect 4: the body limit counts data bytes, not chunk framing ----------------------------

def chunked_body(*sizes: int) -> bytes:
    return b"".join(b"%x\r\n" % size + b"x" * size + b"\r\n" for size in sizes) + b"0\r\n\r\n"


def test_a_chunked_body_under_64_kib_of_data_is_read_whole_however_it_is_chunked(server):
    assert_each_served(server, {"one-chunk-65523": CHUNKED + chunked_body(65_523),
                                "one-chunk-65535": CHUNKED + chunked_body(65_535),
                                "4095-chunks-of-16": CHUNKED + chunked_body(*[16] * 4095)}, 405)


def test_a_chunked_body_of_64_kib_of_data_is_413_however_it_is_chunked(server):
    assert_each_refused(server, {"one-chunk": CHUNKED + chunked_body(65_536),
                                 "two-chunks": CHUNKED + chunked_body(65_535, 1),
                                 "4096-chunks-of-16": CHUNKED + chunked_body(*[16] * 4096),
                                 "declared-huge": CHUNKED + b"ffffffffffffffff\r\n"},
                        413, "body_too_large")


# ---- 2. Expect: 100-continue ------------------------------------------------------------------------

EXPECT = "Expect: 100-continue"


def test_a_request_expecting_100_continue_that_has_already_failed_is_answered_at_once(server):
    cases = {"body-over-the-limit": (request("/health", "POST", EXPECT, "Content-Length: 100000"), 413),
             "length-not-digits": (request("/health", "POST", EXPECT, "Content-Length: abc"), 400),
             "no-host": (b"POST /health HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n", 400)}
    for name, (payload, status) in cases.items():
        result = exchange(address(server), payload, seconds=3)  # the body is never sent
        assert [a.status for a in result.answers] == [status], f"{name}: {result.raw[:300]!r}"
        assert result.closed
    _, out, _ = server.stop()
    assert logged_statuses(out) == ["413", "400", "400"]


def test_a_request_expecting_100_continue_with_no_body_is_answered_at_once_without_100_continue(server):
    for headers in ([EXPECT], [EXPECT, "Content-Length: 0"], [EXPECT, "Content-Length: 000"]):
        with connect(address(server)) as connection:
            connection.sendall(request("/health", "GET", *headers))
            raw, _, _ = read_until_closed(connection, 3)  # kept alive: the answer must come before the 60 s
        assert raw.startswith(b"HTTP/1.1 200 OK\r\n"), (headers, raw[:200])
        assert b"100 Continue" not in raw
    _, out, _ = server.stop()
    assert logged_statuses(out) == ["200", "200", "200"]


def test_a_request_expecting_100_continue_with_a_body_still_gets_it_then_its_answer(server):
    with connect(address(server)) as connection:
        connection.sendall(request("/health", "POST", EXPECT, "Content-Length: 5", "Connection: close"))
        interim = connection.recv(100)
        connection.sendall(b"hello")
        raw, closed, _ = read_until_closed(connection, 3)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert raw.startswith(b"HTTP/1.1 405 ") and closed


# ---- 3. Host --------------------------------------------------------------------------------------

def test_an_http_1_1_request_without_exactly_one_valid_host_is_400(server):
    assert_each_refused(server, {
        "none": b"GET /health HTTP/1.1\r\n\r\n",
        "two": b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "two-same": b"GET /health HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
        "two-in-http-1.0": b"GET /health HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
        "space-and-slash": b"GET /health HTTP/1.1\r\nHost: a b/c\r\n\r\n",
        "slash": b"GET /health HTTP/1.1\r\nHost: a/b\r\n\r\n",
        "userinfo": b"GET /health HTTP/1.1\r\nHost: user@a\r\n\r\n",
        "port-not-digits": b"GET /health HTTP/1.1\r\nHost: a:b\r\n\r\n",
        "two-ports": b"GET /health HTTP/1.1\r\nHost: a:1:2\r\n\r\n",
        "unclosed-ip-literal": b"GET /health HTTP/1.1\r\nHost: [::1\r\n\r\n",
        "bad-ip-literal": b"GET /health HTTP/1.1\r\nHost: [zz::1]\r\n\r\n",
        "bad-percent": b"GET /health HTTP/1.1\r\nHost: a%zz\r\n\r\n",
        "non-ascii": b"GET /health HTTP/1.1\r\nHost: \xc3\xa9.test\r\n\r\n",
    }, 400, "bad_request")


def test_valid_host_values_and_an_http_1_0_request_without_host_are_served(server):
    get = b"GET /health HTTP/1.1\r\nHost: %s\r\n\r\n"
    assert_each_served(server, {
        "name-and-port": get % b"example.test:8080",
        "ipv4": get % b"10.0.0.1",
        "ipv6": get % b"[::1]:80",
        "ipv-future": get % b"[v1.fe80::a+en1]",
        "percent-encoded": get % b"a%2Db",
        "empty": get % b"",  # RFC 9112 3.2: a target with no authority is sent with an empty Host
        "http-1.0-without-host": b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    }, 200)


# ---- 4. stray CR, and whitespace before the request line ----------------------------------------------

def test_a_stray_cr_or_whitespace_before_the_request_line_is_400(server):
    assert_each_refused(server, {
        "cr-cr-lf-ends-the-request-line": b"GET /health HTTP/1.1\r\r\nHost: test\r\n\r\n",
        "cr-in-the-request-line": b"GET /health\r HTTP/1.1\r\nHost: test\r\n\r\n",
        "cr-cr-lf-ends-a-header": b"GET /health HTTP/1.1\r\nHost: test\r\r\n\r\n",
        "cr-in-a-header": b"GET /health HTTP/1.1\r\nHost: test\r\nX-A: 1\r2\r\n\r\n",
        "leading-cr": b"\rGET /health HTTP/1.1\r\nHost: test\r\n\r\n",
        "leading-spaces": b"  GET /health HTTP/1.1\r\nHost: test\r\n\r\n",
        "leading-tab": b"\tGET /health HTTP/1.1\r\nHost: test\r\n\r\n",
        "leading-lf": b"\nGET /health HTTP/1.1\r\nHost: test\r\n\r\n",
        "empty-line-then-space": b"\r\n GET /health HTTP/1.1\r\nHost: test\r\n\r\n",
    }, 400, "bad_request")


def test_empty_lines_before_a_request_line_are_skipped_as_rfc_9112_allows(server):
    assert_each_served(server, {"one": b"\r\n" + request("/health"), "three": b"\r\n" * 3 + request("/health")}, 200)


def test_empty_lines_before_a_request_line_count_toward_the_16_kib_header_limit(server):
    assert_each_refused(server, {"8200-empty-lines": b"\r\n" * 8200 + request("/health")}, 431, "headers_too_large")


# ---- 5. Transfer-Encoding whitespace: only SP and HTAB are optional whitespace ------------------------

def test_a_transfer_encoding_with_other_whitespace_or_chunked_not_last_is_400_not_501(server):
    te = b"POST /health HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: %s\r\n\r\n0\r\n\r\n"
    assert_each_refused(server, {
        "vertical-tab": b"POST /health HTTP/1.1\r\nHost: test\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
        "form-feed": te % b"chunked\x0c",
        "bare-cr": te % b"chunked\r",
        "nbsp": te % b"\xa0chunked",
        "gzip-vt-chunked": te % b"gzip,\x0bchunked",
        "chunked-not-last": te % b"chunked, gzip",
        "empty": te % b"",
    }, 400, "bad_request")


def test_a_well_formed_coding_list_ending_in_chunked_is_still_501(server):
    te = b"POST /health HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: %s\r\n\r\n0\r\n\r\n"
    assert_each_refused(server, {"gzip-chunked": te % b"gzip, chunked", "tab-separated": te % b"gzip\t,\tchunked"},
                        501, "transfer_encoding_not_supported")


# ---- RFC 9112's other "MUST reject" rules --------------------------------------------------------------

def test_rfc_9112_must_reject_cases_are_400(server):
    get = b"GET /health HTTP/1.1\r\nHost: test\r\n%s\r\n\r\n"
    assert_each_refused(server, {
        "space-before-colon": get % b"Content-Length : 0",
        "tab-before-colon": get % b"X-A\t: 1",
        "invalid-name-char": get % b"X(A): 1",
        "lengths-differ": b"POST /health HTTP/1.1\r\nHost: test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "length-list": get % b"Content-Length: 1, 2",
        "length-signed": get % b"Content-Length: +1",
        "length-hex": get % b"Content-Length: 0x1",
        "underscore-content-length": get % b"Content_Length: 5",
        "underscore-transfer-encoding": get % b"Transfer_Encoding: chunked",
        "whitespace-before-first-field": b"GET /health HTTP/1.1\r\n Host: test\r\nHost: test\r\n\r\n",
        "asterisk-form-not-options": b"GET * HTTP/1.1\r\nHost: test\r\n\r\n",
        "http2-preface-as-1.1": b"PRI * HTTP/1.1\r\nHost: test\r\n\r\nSM\r\n\r\n",
    }, 400, "bad_request")


# ---- Connection is a list: `close` anywhere in it closes -------------------------------------------------

def test_connection_close_among_several_options_or_fields_closes_after_the_answer(server):
    get = b"GET /health HTTP/1.1\r\nHost: test\r\n%s\r\n\r\n"
    cases = {"close-twice": get % b"Connection: close, close",
             "two-fields": get % b"Connection: close\r\nConnection: close",
             "close-and-keep-alive": get % b"Connection: keep-alive\r\nConnection: close",
             "with-an-option": get % b"Connection: x-option, Close",
             "http-1.0-keep-alive-and-close": b"GET /health HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"}
    for name, payload in cases.items():
        result = exchange(address(server), payload + AFTER, seconds=3)
        assert result.closed, name
        assert [a.status for a in result.answers] == [200], f"{name}: {result.raw[:300]!r}"


def test_http_1_0_keep_alive_among_several_options_keeps_the_connection(server):
    result = exchange(address(server), b"GET /health HTTP/1.0\r\nConnection: keep-alive, x-option\r\n\r\n"
                      + request("/hello/after", "GET", "Connection: close"), seconds=3)
    assert [a.status for a in result.answers] == [200, 200]


# ---- 6. the receive timeout answers 408 --------------------------------------------------------------

@pytest.mark.parametrize("partial", [b"G", b"GET /health HTTP/1.1\r\nHost: test\r\n",
                                     request("/health", "POST", "Content-Length: 10", body=b"abc"),
                                     CHUNKED + b"5\r\nhel"],
                         ids=["one-byte", "headers-unfinished", "body-unfinished", "chunked-unfinished"])
def test_a_request_not_received_whole_in_time_is_answered_408_logged_and_closed(start_service, partial):
    running = start_service({"APP_RECEIVE_TIMEOUT": "1"})
    with connect(address(running)) as client:
        client.sendall(partial)
        raw, closed, reset = read_until_closed(client, 5)
    assert closed and not reset
    answers = parse_answers(raw)
    assert len(answers) == 1, raw
    assert_json_error(answers[0], 408, "request_timeout")
    _, out, _ = running.stop()
    assert logged_statuses(out) == ["408"]


def test_a_connection_that_sent_nothing_is_closed_without_a_408(start_service):
    running = start_service({"APP_RECEIVE_TIMEOUT": "1"})
    with connect(address(running)) as client:
        raw, closed, _ = read_until_closed(client, 5)
    assert closed and raw == b""
    _, out, _ = running.stop()
    assert logged_statuses(out) == []


# ---- 7. the header block's parse costs O(1) per byte received ------------------------------------------

def header_parse_work(header_bytes: int, monkeypatch) -> int:
    """Feed a request whose header block is about `header_bytes` long to the parser one byte per call; return
    its work: the bytes it looked at itself plus every byte it handed to (or had rebuilt by) waitress's parser."""
    from waitress.adjustments import Adjustments
    from waitress.parser import HTTPRequestParser

    from service.transport.adjustments import MAX_HEADER_BYTES
    from service.transport.parser import HardenedParser

    handed = 0
    waitress_received = HTTPRequestParser.received

    def counted(parser, data):
        nonlocal handed
        handed += len(parser.header_plus) + len(data)  # waitress searches header_plus + data on every call
        return waitress_received(parser, data)

    monkeypatch.setattr(HTTPRequestParser, "received", counted)
    pads = [f"X-Pad-{i:05d}: " + "x" * 49 for i in range((header_bytes - 40) // 64)]  # 64 bytes a line
    payload = request("/health", "GET", *pads)
    assert header_bytes - 64 < len(payload) < MAX_HEADER_BYTES
    parser = HardenedParser(Adjustments(max_request_header_size=MAX_HEADER_BYTES))
    for position in range(len(payload)):
        parser.received(payload[position:position + 1])
    assert parser.completed and parser.error is None and f"X_PAD_{len(pads) - 1:05d}" in parser.headers
    return parser.head.work + handed


def test_parsing_a_header_block_sent_one_byte_at_a_time_costs_work_linear_in_its_size(monkeypatch):
    small, large = header_parse_work(4 * 1024, monkeypatch), header_parse_work(16 * 1024 - 200, monkeypatch)
    assert large / small <= 4.5, (small, large)


# ---- the chunked decoder, whatever the reads' boundaries ------------------------------------------------

def decode_in_pieces(body: bytes, piece: int) -> tuple[bytes, int]:
    """(the data kept, the bytes consumed) when `body` and a request behind it arrive `piece` bytes a read."""
    from service.http_parser import ChunkedBody

    decoder, kept, consumed = ChunkedBody(64 * 1024, 16 * 1024), [], 0
    stream = body + AFTER
    for start in range(0, len(stream), piece):
        if decoder.completed:
            break
        consumed += decoder.feed(stream[start:start + piece], kept.append)
    assert decoder.completed
    return b"".join(kept), consumed


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 4096])
def test_a_chunked_body_decodes_the_same_and_ends_at_the_same_byte_however_its_reads_are_split(piece):
    body = b'5;a="x y"\r\nhello\r\n00B\r\n, world and\r\n1\r\n!\r\n0\r\nX-T: 1\r\nX-U:\r\n\r\n'
    assert decode_in_pieces(body, piece) == (b"hello, world and!", len(body))


@pytest.mark.parametrize("piece", [1, 2, 5])
@pytest.mark.parametrize("case", ["bare-lf-after-size", "bare-lf-after-data", "bare-cr-in-trailer",
                                  "bare-lf-ends-trailers", "data-longer-than-size"])
def test_a_badly_framed_chunked_body_is_refused_however_its_reads_are_split(piece, case):
    from service.http_parser import ChunkedBody, Malformed

    decoder, stream = ChunkedBody(64 * 1024, 16 * 1024), BAD_CHUNKED[case][len(CHUNKED):] + AFTER
    with pytest.raises(Malformed):
        for start in range(0, len(stream), piece):
            decoder.feed(stream[start:start + piece], lambda data: None)


@pytest.mark.parametrize("piece", [1, 2, 3, 4096])
def test_the_header_block_ends_at_the_same_byte_however_its_reads_are_split(piece):
    from service.http_parser import HeadScanner

    head = b"\r\n\r\nGET /health HTTP/1.1\r\nHost: h\r\n\r\n"
    scanner, stream, position = HeadScanner(), head + b"rest", 0
    while True:
        data = stream[position:position + piece]
        taken = scanner.feed(data)
        if taken >= 0:
            break
        position += len(data)
    assert position + taken == len(head)
    assert scanner.request_line() == b"GET /health HTTP/1.1"
