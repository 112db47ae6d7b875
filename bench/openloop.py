"""An open-loop load generator: requests sent on a fixed schedule, every latency recorded.

wrk keeps N requests in flight and sends the next only when an answer arrives, so a server that stalls
slows its own load and its stall is counted once, not for every request that should have been sent
meanwhile (coordinated omission). Here request i is due at start + i / rate whatever happened before;
its latency runs from when the generator dispatched it, so time spent waiting for a free connection
counts too. How late each dispatch was against the schedule (asyncio's timer overshoots by a fraction of
a millisecond) is recorded beside, not added to the server's latency.

Why our own and not autocannon or h2load: h2load 1.52 prints no percentiles, and both pace each
connection instead of the whole run. This is asyncio over plain sockets with keep-alive connections, a
pool large enough that the generator, not the server, is never the bottleneck at the rates the latency
study uses (a few thousand requests a second at most); it records how late its own sends were, so the
report says how precise the schedule was.
"""

import asyncio
import math
import statistics
import time

CONNECTIONS = 64  # the pool: requests beyond it wait (and that wait is counted in their latency)
TIMEOUT_SECONDS = 5.0


def request_bytes(host: str, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: hello-api-bench-openloop\r\n\r\n".encode()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.x answer with a Content-Length body: (status, whether the server keeps the connection)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    fields = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    await reader.readexactly(int(fields.get("content-length", "0")))
    keep = fields.get("connection", "").lower() != "close" and lines[0].startswith("HTTP/1.1")
    return status, keep


class Pool:
    """Keep-alive connections to one server, opened on demand up to `size`."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port = host, port
        self.idle: asyncio.Queue = asyncio.Queue()
        self.free = asyncio.Semaphore(size)

    async def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        await self.free.acquire()
        if not self.idle.empty():
            return self.idle.get_nowait()
        return await asyncio.open_connection(self.host, self.port)

    def give_back(self, connection: tuple | None) -> None:
        if connection is not None:
            self.idle.put_nowait(connection)
        self.free.release()


async def one_request(pool: Pool, request: bytes, dispatched: float, latencies: list[float], counts: dict) -> None:
    connection = None
    try:
        connection = await pool.take()
        reader, writer = connection
        writer.write(request)
        status, keep = await asyncio.wait_for(read_answer(reader), TIMEOUT_SECONDS)
        latencies.append(time.perf_counter() - dispatched)
        counts["non_2xx" if not 200 <= status < 300 else "ok"] += 1
        if not keep:
            writer.close()
            connection = None
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError, IndexError):
        counts["errors"] += 1
        if connection is not None:
            connection[1].close()
        connection = None
    finally:
        pool.give_back(connection)


async def run_schedule(host: str, port: int, path: str, rate: float, seconds: float, connections: int) -> dict:
    pool, request = Pool(host, port, connections), request_bytes(host, path)
    latencies: list[float] = []
    counts = {"ok": 0, "non_2xx": 0, "errors": 0}
    lateness: list[float] = []
    total = int(rate * seconds)
    tasks = []
    start = time.perf_counter() + 0.05
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        dispatched = time.perf_counter()
        lateness.append(max(0.0, dispatched - due))
        tasks.append(asyncio.create_task(one_request(pool, request, dispatched, latencies, counts)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not pool.idle.empty():
        pool.idle.get_nowait()[1].close()
    return {"latencies": latencies, "counts": counts, "sent": total, "elapsed": elapsed, "lateness": lateness}


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of sorted values."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered), max(1, math.ceil(fraction * len(ordered)))) - 1]


def open_loop(port: int, rate: float, seconds: float, path: str = "/hello/bench", host: str = "127.0.0.1",
              connections: int = CONNECTIONS) -> dict:
    """Send `rate` requests a second for `seconds`, on schedule; latency percentiles of every answer."""
    raw = asyncio.run(run_schedule(host, port, path, rate, seconds, connections))
    ordered = sorted(raw["latencies"])
    return {
        "rate": rate, "seconds": seconds, "sent": raw["sent"], **raw["counts"],
        "achieved_rate": len(ordered) / raw["elapsed"] if raw["elapsed"] else 0.0,
        "p50_seconds": percentile(ordered, 0.50), "p99_seconds": percentile(ordered, 0.99),
        "p999_seconds": percentile(ordered, 0.999), "max_seconds": ordered[-1] if ordered else float("nan"),
        "send_lateness_median_seconds": statistics.median(raw["lateness"]) if raw["lateness"] else 0.0,
        "send_lateness_p99_seconds": percentile(sorted(raw["lateness"]), 0.99),
    }
