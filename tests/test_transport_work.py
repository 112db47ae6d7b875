"""The work one request costs the transport, counted rather than timed: turns of the event loop and sends.

A turn of the loop that finds nothing to do is the pathology these guard: the event loop saw a connection
writable while its task thread was still sending, spun on select() and kept the GIL from that thread, so
each answer waited for CPython's switch interval (the service served 0.25-0.5x what plain waitress serves).
"""

import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from support import free_port

from service.app import create_app
from service.config import Settings
from service.transport import Transport
from service.transport.channel import HardenedChannel
from service.transport.event_loop import EventLoop

CLIENT = r"""
import socket, sys, threading
port, connections, requests = map(int, sys.argv[1:4])
request = b"GET /hello/counted HTTP/1.1\r\nHost: t\r\n\r\n"
def client():
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for _ in range(requests):
            sock.sendall(request)
            answer = b""
            while not answer.endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise SystemExit("closed early")
                answer += chunk
threads = [threading.Thread(target=client) for _ in range(connections)]
for t in threads: t.start()
for t in threads: t.join()
"""


@contextmanager
def serving(threads: int = 8) -> Iterator[tuple[Transport, int]]:
    port = free_port()
    transport = Transport(create_app("test"), Settings(host="127.0.0.1", port=port, threads=threads), None)
    stopped = threading.Event()
    loop = threading.Thread(target=transport.serve, args=(stopped.is_set,), daemon=True)
    loop.start()
    try:
        yield transport, port
    finally:
        stopped.set()
        transport.wake()
        loop.join(5)
        transport.drain(0.5, cut_short=lambda: False)


def load(port: int, connections: int, requests: int) -> None:
    subprocess.run([sys.executable, "-c", CLIENT, str(port), str(connections), str(requests)], check=True,
                   timeout=120)


@pytest.fixture
def counted(monkeypatch):
    """Counts turns of the event loop and sends on client connections."""
    counts = {"turns": 0, "sends": 0}
    turn = EventLoop.turn

    def counting(self, *args, **kwargs):
        counts["turns"] += 1
        return turn(self, *args, **kwargs)
    monkeypatch.setattr(EventLoop, "turn", counting)
    send = HardenedChannel.send

    def counting_send(self, *args, **kwargs):
        counts["sends"] += 1
        return send(self, *args, **kwargs)
    monkeypatch.setattr(HardenedChannel, "send", counting_send)
    return counts


def test_an_answer_leaves_in_one_send_header_and_body_together(counted):
    with serving() as (_, port):
        load(port, connections=1, requests=50)
    assert counted["sends"] == 50


def test_the_event_loop_does_not_spin_while_task_threads_send(counted):
    connections, requests = 16, 150
    with serving() as (_, port):
        load(port, connections, requests)
    turns_per_request = counted["turns"] / (connections * requests)
    # Measured: 0.14-0.18 turns per request (one turn serves several connections); spinning took 2-8.
    assert turns_per_request < 1, f"{turns_per_request:.2f} turns of the event loop per request"


def test_a_connection_whose_task_thread_holds_its_output_is_not_polled_for_writing():
    with serving() as (transport, port), socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
        client.recv(65536)
        channel = next(iter(transport.channels()))
        with channel.requests_lock:
            channel.requests.append(object())  # as while a task runs
        channel.total_outbufs_len = 10
        holding, release = threading.Event(), threading.Event()

        def task_thread_sending() -> None:
            with channel.outbuf_lock:
                holding.set()
                release.wait(5)
        sender = threading.Thread(target=task_thread_sending)
        sender.start()
        try:
            holding.wait(5)
            assert not channel.writable()
            release.set()
            sender.join(5)
            assert channel.writable()  # released with bytes left over: the event loop must flush them
        finally:
            release.set()
            channel.total_outbufs_len = 0
            channel.requests.clear()


def test_requests_that_wait_for_a_thread_are_counted_without_a_log_record_each(monkeypatch):
    records = []
    make_record = logging.Logger.makeRecord

    def counting(self, *args, **kwargs):
        record = make_record(self, *args, **kwargs)
        records.append(record.getMessage())
        return record
    monkeypatch.setattr(logging.Logger, "makeRecord", counting)
    with serving(threads=1) as (transport, port):
        load(port, connections=16, requests=50)
        summarised = transport.queue_summary.count + sum("waited for one" in r for r in records)
    one_each = [r for r in records if "queue depth" in r.lower()]
    assert summarised or one_each, "no request waited for the one thread: the load did not queue"
    assert not one_each, f"{len(one_each)} log records, one per queued request"
    assert len(records) <= 2, records  # the summary's first line, and at most one more
