"""HTTP hardening, with raw sockets against `python -m service`: framing, paths, malformed requests, slow
and silent clients, pipelining, and the access log's bounds. Every case here was answered differently by
waitress 3.0.2 on its own (see service/transport/); these tests fail if an upgrade changes that."""

import re
import select
import socket
import time

import pytest
from conftest import wait_until
from raw_http import (
    DRIPPING_REQUEST,
    access_lines,
    address,
    assert_fresh_client_is_answered,
    assert_json_error,
    closed_by,
    connect,
    exchange,
    held_by,
    held_connections,
    read_answer,
    read_until_closed,
    request,
    server_side_connections,
    unread_bytes_at_server,
)
from support import allow_open_files

SMUGGLED = b"GET /hello/SMUGGLED HTTP/1.1\r\nHost: test\r\n\r\n"
CLOSE = "Connection: close"


@pytest.fixture
def server(start_service):
    return start_service()


# ---- 1. request smuggling: framing ------------------------------------------------------------------

SMUGGLING = {
    "te-on-http-1.0": b"POST /health HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n"
                      b"Content-Length: 4\r\n\r\n" + b"%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n",
    "te-on-http-1.0-alone": b"POST /health HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: "
                            b"chunked\r\n\r\n" + SMUGGLED,
    "te-and-cl": b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: "
                 + str(5 + len(SMUGGLED)).encode() + b"\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te-comma-chunked": b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te-obs-fold": b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te-chunked-twice": b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
                        b"chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    "te-x-chunked": b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
}


REFUSED_AS = {"te-chunked-twice": (501, "transfer_encoding_not_supported"),
              "te-x-chunked": (501, "transfer_encoding_not_supported")}  # the rest: 400 bad_request


@pytest.mark.parametrize("case", SMUGGLING)
def test_ambiguous_framing_is_refused_and_the_connection_closed_so_nothing_is_smuggled(server, case):
    result = exchange(address(server), SMUGGLING[case])
    assert result.closed
    assert len(result.answers) == 1, result.raw
    assert_json_error(result.only, *REFUSED_AS.get(case, (400, "bad_request")))
    assert b"SMUGGLED" not in result.raw


def test_a_transfer_encoding_other_than_chunked_is_501(server):
    result = exchange(address(server), request("/health", "POST", "Transfer-Encoding: gzip"))
    assert_json_error(result.only, 501, "transfer_encoding_not_supported")


def test_a_well_formed_chunked_request_is_still_served(server):
    result = exchange(address(server), request("/health", "GET", "Transfer-Encoding: chunked", CLOSE,
                                               body=b"3\r\nabc\r\n0\r\n\r\n"))
    assert result.only.status == 200
    assert result.only.json()["status"] == "healthy"


def test_pipelined_requests_on_one_connection_are_each_answered_in_order(server):
    payload = b"".join(request(f"/hello/n{i}") for i in range(10)) + request("/hello/last", "GET", CLOSE)
    result = exchange(address(server), payload)
    assert [a.json()["message"] for a in result.answers] == [f"Hello, n{i}!" for i in range(10)] + ["Hello, last!"]


# ---- 2. the path the app sees is the path that was sent ---------------------------------------------

@pytest.mark.parametrize("target", [b"/hea\tlth", b"\x01/health", b"/health\x7f", b"/hea lth", b"/hello/J\xc3\xbcrgen",
                                    b"/health\x00"], ids=["tab", "leading-control", "del", "space", "raw-utf8", "nul"])
def test_a_target_with_whitespace_control_or_raw_bytes_is_400(server, target):
    result = exchange(address(server), b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_json_error(result.only, 400, "bad_request")


@pytest.mark.parametrize("target", ["//health", "//hello/World", "///health"])
def test_leading_double_slashes_are_not_merged_so_the_path_is_not_found(server, target):
    result = exchange(address(server), request(target, "GET", CLOSE))
    assert result.only.status == 404
    assert result.only.json()["message"].startswith(f"No resource at {target}.")


def test_an_absolute_form_target_is_served_by_its_path(server):
    result = exchange(address(server), request("http://example.test/hello/abs", "GET", CLOSE))
    assert result.only.json()["message"] == "Hello, abs!"


def test_query_strings_are_ignored_and_an_encoded_slash_splits_the_name(server):
    query = exchange(address(server), request("/hello/World?name=Mallory&x=%FF", "GET", CLOSE))
    assert query.only.json()["message"] == "Hello, World!"
    slash = exchange(address(server), request("/hello/a%2Fb", "GET", CLOSE))
    assert slash.only.status == 404


# ---- 3 and 4. malformed requests: a JSON 400 at once, no traceback ------------------------------------

MALFORMED = {
    "broken-absolute-form": b"GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n",
    "broken-absolute-form-2": b"GET http://[::1 HTTP/1.1\r\nHost: x\r\n\r\n",
    "bare-lf": b"GET /health HTTP/1.1\n\n",
    "bare-lf-in-headers": b"GET /health HTTP/1.1\r\nHost: x\n\r\n",
    "no-version": b"GET /health\r\n\r\n",
    "lower-case-method": b"get /health HTTP/1.1\r\n\r\n",
    "content-length-abc": b"GET /health HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    "negative-length": b"GET /health HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
    "obs-fold": b"GET /health HTTP/1.1\r\nX-Note: one\r\n two\r\n\r\n",
    "header-without-colon": b"GET /health HTTP/1.1\r\nNoColonHere\r\n\r\n",
    "binary": b"\x00\xff" * 64 + b"\r\n\r\n",
    "tls-client-hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32),
}


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_request_gets_a_json_400_at_once(server, payload):
    started = time.monotonic()
    result = exchange(address(server), payload, seconds=3)
    assert result.closed, "the server must answer and close, not wait for more"
    assert time.monotonic() - started < 2.5
    assert_json_error(result.only, 400, "bad_request")


def test_an_unsupported_http_version_is_505(server):
    result = exchange(address(server), b"GET / HTTP/9.9\r\n\r\n")
    assert_json_error(result.only, 505, "http_version_not_supported")


def test_hundreds_of_broken_targets_write_no_traceback_and_one_short_line_each(server):
    for _ in range(200):
        assert exchange(address(server), b"GET http://[ HTTP/1.1\r\n\r\n", seconds=2).only.status == 400
    code, out, err = server.stop()
    assert code == 0
    assert "Traceback" not in err and "uncaptured" not in err
    assert len(err.splitlines()) <= 4  # start-up, draining, stopped
    assert sum(" 400 " in line for line in out.splitlines()) == 200


# ---- issue 8: waitress's own errors, in the service's form and logged -------------------------------

def test_a_body_over_64_kib_is_413_and_one_byte_less_is_not(server):
    limit = 64 * 1024
    refused = exchange(address(server), request("/health", "POST", f"Content-Length: {limit}",
                                                body=b"x" * limit))
    assert_json_error(refused.only, 413, "body_too_large")
    accepted = exchange(address(server), request("/health", "POST", f"Content-Length: {limit - 1}", CLOSE,
                                                 body=b"x" * (limit - 1)))
    assert accepted.only.status == 405  # read whole, then answered by the app


def test_headers_over_16_kib_are_431_and_just_under_is_served(server):
    under = exchange(address(server), request("/health", "GET", "X-Pad: " + "x" * (16 * 1024 - 100), CLOSE))
    assert under.only.status == 200
    over = exchange(address(server), request("/health", "GET", "X-Pad: " + "x" * (16 * 1024)))
    assert_json_error(over.only, 431, "headers_too_large")


def test_an_oversized_header_is_read_as_431_every_time_not_as_a_reset(server):
    payload = request("/health", "GET", "X-Huge: " + "x" * 300_000)
    outcomes = []
    for _ in range(50):
        result = exchange(address(server), payload, seconds=5)
        outcomes.append(result.answers[0].status if result.answers else ("reset" if result.reset else "none"))
    assert outcomes == [431] * 50


def test_a_client_still_sending_after_an_error_answer_is_not_reset(server):
    """After an error answer the server half-closes and keeps reading for a moment (a lingering close): a
    client that is still writing its oversized request must not have its writes reset before it reads."""
    with connect(address(server)) as client:
        client.sendall(b"GET /health HTTP/1.1\r\nX-Huge: " + b"x" * 20_000)  # over the limit: 431 now
        time.sleep(0.3)
        for _ in range(20):
            client.sendall(b"x" * 10_000)  # a reset would raise ConnectionResetError or BrokenPipeError here
            time.sleep(0.01)
        raw, _, reset = read_until_closed(client, 3)
    assert raw.startswith(b"HTTP/1.1 431 ")
    assert not reset


def test_errors_the_server_answers_itself_are_logged_with_what_was_sent(server):
    exchange(address(server), request("/hello/x", "GET", "Content-Length: abc"))
    exchange(address(server), request("/hello/y", "GET", "X-Pad: " + "x" * 20_000))
    exchange(address(server), request("/hello/z", "POST", "Transfer-Encoding: gzip"))
    _, out, _ = server.stop()
    logged = {(fields[2], fields[3], fields[4]) for fields in access_lines(out)}
    assert {("GET", "/hello/x", "400"), ("GET", "/hello/y", "431"), ("POST", "/hello/z", "501")} <= logged


# ---- 5. slow and silent clients ---------------------------------------------------------------------

def test_a_request_not_received_whole_within_the_receive_timeout_is_closed(start_service):
    running = start_service({"APP_RECEIVE_TIMEOUT": "1"})
    with connect(address(running)) as dripping:
        dripping.sendall(b"GET /health HTTP/1.1\r\n")
        for _ in range(4):  # a byte every 0.5 s: an idle timeout would never fire
            time.sleep(0.5)
            try:
                dripping.sendall(b"X")
            except OSError:
                break
        _, closed, _ = read_until_closed(dripping, 3)
    assert closed


def test_a_silent_connection_is_closed_after_the_receive_timeout(start_service):
    running = start_service({"APP_RECEIVE_TIMEOUT": "1"})
    with connect(address(running)) as silent:
        started = time.monotonic()
        _, closed, _ = read_until_closed(silent, 5)
    assert closed
    assert 0.9 < time.monotonic() - started < 4


def test_an_idle_keep_alive_connection_outlives_the_receive_timeout(start_service):
    running = start_service({"APP_RECEIVE_TIMEOUT": "1", "APP_CHANNEL_TIMEOUT": "30"})
    with connect(address(running)) as idle:
        idle.sendall(request("/health"))
        raw, closed, _ = read_until_closed(idle, 2.5)  # an answer, then 2.5 s of keep-alive silence
        assert raw.startswith(b"HTTP/1.1 200") and not closed
        idle.sendall(request("/hello/again", "GET", CLOSE))
        raw, closed, _ = read_until_closed(idle, 3)
    assert b"Hello, again!" in raw


def test_app_channel_timeout_closes_an_idle_keep_alive_connection(start_service):
    running = start_service({"APP_CHANNEL_TIMEOUT": "1"})
    with connect(address(running)) as idle:
        idle.sendall(request("/health"))
        started = time.monotonic()
        raw, closed, _ = read_until_closed(idle, 5)
    assert raw.startswith(b"HTTP/1.1 200")
    assert closed
    assert time.monotonic() - started < 4.5


def test_a_fresh_client_is_answered_while_1000_silent_and_50_dripping_sockets_are_open(start_service):
    """At the connection limit, the connections that waited longest make room. With a receive timeout of a
    minute, a client that had to wait for it would take 60 s; how fast it really is, is the bench's job
    (`python -m bench reliability`, "Hostile clients")."""
    server = start_service({"APP_RECEIVE_TIMEOUT": "60"})
    allow_open_files(4096)
    with held_connections(address(server), 1000), held_connections(address(server), 50, DRIPPING_REQUEST):
        assert_fresh_client_is_answered(address(server), seconds=5.0)


def test_at_the_connection_limit_the_longest_waiting_connection_is_closed_first(start_service):
    running = start_service({"APP_CONNECTION_LIMIT": "10", "APP_RECEIVE_TIMEOUT": "60"})
    wait_until(lambda: server_side_connections(running.port) == 0, "no connection left from start-up")
    oldest = connect(address(running))
    wait_until(lambda: unread_bytes_at_server(oldest) == 0, "the oldest connection established")
    others = [connect(address(running)) for _ in range(12)]
    try:
        _, closed, _ = read_until_closed(oldest, 10)
        assert closed
        fresh = exchange(address(running), request("/health", "GET", CLOSE), seconds=10)
        assert fresh.only.status == 200
    finally:
        for connection in [oldest, *others]:
            connection.close()


def refused_and_staying(running, count: int) -> list[socket.socket]:
    """`count` clients refused with a 400 that stay connected, silent: each lingers for LINGER_SECONDS."""
    refused = []
    for _ in range(count):
        refused.append(connect(address(running)))
        refused[-1].sendall(b"BAD\r\n\r\n")
        assert read_answer(refused[-1]).startswith(b"HTTP/1.1 400 ")
    return refused


def test_at_the_connection_limit_a_connection_lingering_after_its_answer_is_closed_before_a_waiting_one(
        start_service):
    running = start_service({"APP_CONNECTION_LIMIT": "10", "APP_RECEIVE_TIMEOUT": "60"})
    pid = running.process.pid
    waiting = connect(address(running))
    wait_until(lambda: held_by(pid, waiting), "the waiting connection accepted")
    lingering = refused_and_staying(running, 9)  # the limit is reached
    arriving = connect(address(running))
    try:
        wait_until(lambda: held_by(pid, arriving), "the eleventh connection accepted")
        wait_until(lambda: closed_by(pid, lingering[0]), "a lingering connection closed")
        assert held_by(pid, waiting)
    finally:
        for connection in [waiting, *lingering, arriving]:
            connection.close()


def test_a_fresh_client_is_answered_while_every_other_connection_at_the_limit_still_lingers(start_service):
    """Lingering connections could not be closed to admit another: at a small limit a crowd of refused clients
    that stay connected kept fresh clients out (not even accepted) until their lingering closes ended, and left
    a fresh client accepted but not yet read the only connection that could be closed for the next arrival."""
    running = start_service({"APP_CONNECTION_LIMIT": "10"})
    pid = running.process.pid
    lingering = refused_and_staying(running, 10)
    try:
        fresh = exchange(address(running), request("/health", "GET", CLOSE), seconds=5)
        assert fresh.only.status == 200
        assert not all(closed_by(pid, connection) for connection in lingering), "it waited for the lingering closes"
    finally:
        for connection in lingering:
            connection.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "*"])  # one listening socket, or two (and a wake-up pipe each)
def test_the_connection_limit_counts_client_connections_only(start_service, host):
    """APP_CONNECTION_LIMIT=10 holds 10 silent clients; the 11th closes exactly one, the oldest.
    (waitress counts its listening sockets and wake-up pipes against the limit: 8 or 6 clients.)"""
    running = start_service({"APP_CONNECTION_LIMIT": "10", "APP_RECEIVE_TIMEOUT": "300", "APP_HOST": host})
    # The start-up health checks' connections gone first (one still being answered would count).
    wait_until(lambda: server_side_connections(running.port) == 0, "no connection left from start-up")
    silent = [connect(address(running)) for _ in range(10)]
    try:
        fresh = exchange(address(running), request("/health", "GET", CLOSE), seconds=5)
        assert fresh.only.status == 200  # accepted after all 10, so each of them was accepted or evicted first
        _, closed, _ = read_until_closed(silent[0], 5)
        assert closed
        still_open = [c for c in silent[1:] if not select.select([c], [], [], 0)[0]]
        assert len(still_open) == 9
    finally:
        for connection in silent:
            connection.close()


# ---- 6. pipelining: one connection's backlog does not starve the others -----------------------------

def test_clients_pipelining_hundreds_of_requests_each_leave_others_served(server):
    allow_open_files(4096)
    hogs = [connect(address(server)) for _ in range(20)]
    try:
        for hog in hogs:
            hog.sendall(request("/health") * 200)
        fresh = exchange(address(server), request("/hello/fresh", "GET", CLOSE), seconds=5)
        assert fresh.only.json()["message"] == "Hello, fresh!"
    finally:
        for hog in hogs:
            hog.close()


# ---- 7. the access log's bounds ---------------------------------------------------------------------

def test_a_long_path_is_cut_and_marked_in_the_access_log_and_the_line_stays_atomic(server):
    long_path = "/hello/" + "a" * 15_000
    exchange(address(server), request(long_path, "GET", CLOSE))
    _, out, _ = server.stop()
    line = next(line for line in out.splitlines() if "/hello/aaa" in line)
    assert len(line.encode()) < 4096  # PIPE_BUF: one os.write of it is never interleaved
    assert re.search(r" /hello/a{505}\.\.\.\[15007B\] 400 ", line)


def test_an_unparsable_request_leaves_no_empty_field_in_the_access_log(server):
    exchange(address(server), b"\x00\xff\r\n\r\n")
    exchange(address(server), b"GET\r\n\r\n")
    _, out, _ = server.stop()
    for fields in access_lines(out):
        assert len(fields) == 6, fields
        assert all(fields), fields


def test_the_images_healthcheck_is_left_out_of_the_access_log_but_other_health_checks_are_not(server):
    exchange(address(server), request("/health?from=image", "GET", "User-Agent: hello-api-healthcheck", CLOSE))
    exchange(address(server), request("/health?from=kubelet", "GET", "User-Agent: kube-probe/1.31", CLOSE))
    _, out, _ = server.stop()
    targets = [fields[3] for fields in access_lines(out)]
    assert "/health?from=kubelet" in targets
    assert "/health?from=image" not in targets


def test_socket_is_reusable_after_a_lingering_close(server):
    """The lingering close ends: the connection is closed after its error answer, and the server serves on."""
    with connect(address(server)) as connection:
        connection.sendall(request("/health", "GET", "Content-Length: abc"))
        _, closed, _ = read_until_closed(connection, 4)
    assert closed
    assert exchange(address(server), request("/health", "GET", CLOSE)).only.status == 200


def test_ipv6_loopback_is_served_when_app_host_is_star(start_service):
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    running = start_service({"APP_HOST": "*"})
    result = exchange(("::1", running.port), request("/health", "GET", CLOSE))
    assert result.only.status == 200
    assert exchange(("127.0.0.1", running.port), request("/health", "GET", CLOSE)).only.status == 200


class ServerStub:
    """What a channel asks of its server while it receives."""

    def __init__(self):
        self.active_channels, self.tasks = {}, []

    def add_task(self, channel):
        self.tasks.append(channel)


def make_channel(sock: socket.socket):
    from waitress.adjustments import Adjustments

    from service.transport.channel import HardenedChannel

    return HardenedChannel(ServerStub(), sock, ("127.0.0.1", 1), Adjustments(), map={})


def test_a_spurious_read_event_does_not_close_the_connection():
    """A descriptor evicted and reused by a new connection in the same turn of the event loop is reported
    readable with nothing to read; waitress would close that new connection."""
    ours, theirs = socket.socketpair()
    try:
        ours.setblocking(False)
        channel = make_channel(ours)
        channel.handle_read()
        assert channel.socket is not None and channel.connected
        theirs.sendall(request("/health"))
        channel.handle_read()
        assert [r.path for r in channel.requests] == ["/health"]
    finally:
        ours.close()
        theirs.close()


def test_at_most_4_requests_per_connection_are_parsed_ahead_and_the_rest_waits_its_turn():
    ours, theirs = socket.socketpair()
    try:
        channel = make_channel(ours)
        channel.received(b"".join(request(f"/hello/n{i}") for i in range(10)))
        assert [r.path for r in channel.requests] == ["/hello/n0", "/hello/n1", "/hello/n2", "/hello/n3"]
        assert channel.unparsed.startswith(b"GET /hello/n4 ")
        assert not channel.readable()  # nothing more is read while that waits
        channel.requests.clear()  # as if the four were answered
        assert channel.writable()  # the event loop comes back for the rest
        channel.handle_write()
        assert [r.path for r in channel.requests] == ["/hello/n4", "/hello/n5", "/hello/n6", "/hello/n7"]
    finally:
        ours.close()
        theirs.close()


def test_a_connection_limit_beyond_1024_descriptors_serves_them_all(start_service):
    """select() cannot watch a descriptor numbered 1024 or more: above that the event loop must be poll()."""
    allow_open_files(4096)
    running = start_service({"APP_CONNECTION_LIMIT": "1500"})
    with held_connections(address(running), 1100) as held:
        assert_fresh_client_is_answered(address(running), seconds=5)
        held[-1].sendall(request("/hello/last", "GET", CLOSE))  # a connection above descriptor 1024
        raw, _, _ = read_until_closed(held[-1], 5)
        assert b"Hello, last!" in raw
    code, _, err = running.stop()
    assert code == 0 and "Traceback" not in err
