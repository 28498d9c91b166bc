"""What hostile clients cost a veilnet HTTP server, beside a baseline from the same run.

1. Refusing bodies (the gateway's own parse, ``edge.parse_body`` into its chat document; median of 5):
   a small valid request (the baseline), a 350k-name ``models`` list (3.7 MB, refused: at most 8 names), a
   prompt near the 4 MiB body limit (parsed; a miner refuses it as longer than the context), and the
   process's RSS before and after 20 refusals of the models list (nothing is kept).
2. Held connections: normal requests to a server run by ``veilnet.serving.serve`` (the deadlines of
   ``veilnet.connections``), p50/p99 over 200 sequential requests, with no other client (the baseline) and
   while N clients hold connections open (half silent, half sending headers a byte at a time).
Run: .venv/bin/python bench/bench_hostile.py [held connections, default 1000]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import signal
import socket
import statistics
import sys
import time

import aiohttp
from fastapi import Request
from fastapi.responses import Response

from veilnet.connections import ConnectionTimeouts
from veilnet.edge import EdgeApp, install_error_handlers, parse_body, read_body
from veilnet.errors import InvalidRequest
from veilnet.protocol.openai import GatewayChatRequest
from veilnet.serving import ServiceStop, serve


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def parse_ms(body: bytes) -> tuple[float, str]:
    times, outcome = [], ""
    for _ in range(5):
        started = time.perf_counter()
        try:
            parse_body(GatewayChatRequest, body)
            outcome = "parsed"
        except InvalidRequest as exc:
            outcome = f"400 {exc.message[:70]}"
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), outcome


def refusals() -> None:
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    small = json.dumps(chat).encode()
    models = json.dumps({**chat, "models": [f"m{i}" for i in range(350_000)]}).encode()
    prompt = json.dumps({**chat, "messages": [{"role": "user", "content": "a " * 2_000_000}]}).encode()
    print("1. parsing and refusing bodies (median of 5)")
    for name, body in (("small valid request (baseline)", small), ("350k-name models list", models),
                       ("prompt near the body limit", prompt)):
        ms, outcome = parse_ms(body)
        print(f"   {name:32s} {len(body) / 1e6:5.2f} MB {ms:8.2f} ms  {outcome}")
    before = rss_mb()
    for _ in range(20):
        parse_ms(models)
    print(f"   RSS {before:.0f} MB before 20 more refusals of the models list, {rss_mb():.0f} MB after")


def echo_app() -> EdgeApp:
    app = EdgeApp()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await read_body(request, 1 << 20))

    return app


async def latencies(url: str, n: int = 200) -> tuple[float, float]:
    times = []
    async with aiohttp.ClientSession() as http:
        for _ in range(n):
            started = time.perf_counter()
            async with http.post(url, data=b"hello") as response:
                await response.read()
            times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


async def hold(port: int, slow: bool, stop: asyncio.Event) -> None:
    with contextlib.suppress(OSError):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if slow:
            writer.write(b"POST /echo HTTP/1.1\r\nHost: x\r\n")
        while not stop.is_set() and not reader.at_eof():
            if slow:
                writer.write(b"X")
            await asyncio.sleep(0.5)
        writer.close()


async def held(count: int) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    stop = ServiceStop(None)
    server = asyncio.create_task(serve(echo_app(), host="127.0.0.1", port=port, stop=stop,
                                       timeouts=ConnectionTimeouts(keep_alive_seconds=30, header_seconds=30)))
    await asyncio.sleep(1.0)
    url = f"http://127.0.0.1:{port}/echo"
    print("2. normal requests, p50 / p99 over 200 (deadlines 30 s, so the held connections stay held)")
    p50, p99 = await latencies(url)
    print(f"   no other client (baseline)        {p50:6.2f} / {p99:6.2f} ms")
    release = asyncio.Event()
    holders = [asyncio.create_task(hold(port, i % 2 == 1, release)) for i in range(count)]
    await asyncio.sleep(2.0)
    p50, p99 = await latencies(url)
    print(f"   while {count} connections are held {p50:6.2f} / {p99:6.2f} ms")
    release.set()
    await asyncio.gather(*holders)
    stop.on_signal(signal.SIGTERM)
    await server


if __name__ == "__main__":
    refusals()
    asyncio.run(held(int(sys.argv[1]) if len(sys.argv) > 1 else 1000))
