"""veilnet's RelayClient against aiohttp's client, as the upstream side of the same minimal relay.

Both targets are the same ASGI app served the same way (uvicorn, uvloop): read the request, POST it to the
upstream, pass every block of the streamed answer on. Only the client making the upstream request differs:
  aiohttp  an aiohttp ClientSession (no connection cap), relaying ``response.content.iter_any()``
  relay    veilnet's RelayClient, relaying ``response.blocks()``
beside the upstream called directly. The upstream streams 52 SSE chunks at once (bench_gateway's). At
concurrency 1, 16 and 64, targets interleaved over three rounds: streams/s (median round), p50, and each relay
process's CPU ms per stream, which is what the client changes.
Run: .venv/bin/python bench/bench_relay.py [seconds per cell, default 3]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
from collections.abc import AsyncIterator

import aiohttp
from bench_gateway import CHUNKS, load, run_upstream
from measure import Run, free_port, interleaved, percentile, wait_up
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

ROUNDS = 3


def run_relay(port: int, upstream_port: int, client: str) -> None:
    import uvloop

    from veilnet.relay import RelayClient
    from veilnet.serving import serve

    target = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
    headers = {"Content-Type": "application/json"}

    async def main() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session, \
                RelayClient() as relay:

            async def answer(body: bytes) -> tuple[int, AsyncIterator[bytes], object]:
                if client == "aiohttp":
                    response = await session.post(target, data=body, headers=headers)
                    return response.status, response.content.iter_any(), response
                relayed = await relay.post(target, body, headers, timeout=60)
                return relayed.status, relayed.blocks(), relayed

            async def app(scope: Scope, receive: Receive, send: Send) -> None:
                if scope["type"] != "http":
                    return
                if scope["path"] == "/health":
                    await send({"type": "http.response.start", "status": 200, "headers": []})
                    await send({"type": "http.response.body", "body": b"ok"})
                    return
                status, blocks, response = await answer(await Request(scope, receive).body())
                try:
                    await send({"type": "http.response.start", "status": status,
                                "headers": [(b"content-type", b"text/event-stream")]})
                    async for block in blocks:
                        await send({"type": "http.response.body", "body": block, "more_body": True})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                finally:
                    response.release()  # type: ignore[attr-defined]

            await serve(app, host="127.0.0.1", port=port, log_level="critical", backlog=4096)

    uvloop.run(main())


def main(seconds: float) -> None:
    upstream_port = free_port()
    ports = {"aiohttp": free_port(), "relay": free_port()}
    procs = {"direct": multiprocessing.Process(target=run_upstream, args=(upstream_port, 0.0), daemon=True)}
    for name, port in ports.items():
        procs[name] = multiprocessing.Process(target=run_relay, args=(port, upstream_port, name), daemon=True)
    for proc in procs.values():
        proc.start()
    try:
        urls = {"direct": f"http://127.0.0.1:{upstream_port}",
                **{name: f"http://127.0.0.1:{port}" for name, port in ports.items()}}
        for url in urls.values():
            asyncio.run(wait_up(f"{url}/health"))
        print(f"streams of {CHUNKS} chunks from an instant upstream through the same minimal ASGI relay, upstream "
              f"side by aiohttp's client or veilnet's RelayClient; {seconds:.0f} s per cell in {ROUNDS} interleaved "
              f"rounds; {os.cpu_count()} cores; cpu: the relay process's CPU ms per stream")
        print(f"{'target':<9}{'conc':>5}{'streams/s':>11}{'p50 ms':>9}{'cpu ms':>8}")
        for concurrency in (1, 16, 64):
            def runner(url: str, c: int = concurrency) -> Run:
                return lambda s: asyncio.run(load(f"{url}/v1/chat/completions", {"Content-Type": "application/json"},
                                                  c, s))

            pids = {name: proc.pid or 0 for name, proc in procs.items()}
            cells = interleaved({name: runner(url) for name, url in urls.items()}, pids, seconds, ROUNDS)
            for name, cell in cells.items():
                print(f"{name:<9}{concurrency:>5}{cell.rate:>11.0f}{percentile(cell.latencies, 50):>9.2f}"
                      f"{cell.cpu_ms:>8.2f}")
            print(f"{'':<9}{concurrency:>5}  relay vs aiohttp: {cells['relay'].rate / cells['aiohttp'].rate:.2f}x "
                  f"streams/s, {cells['relay'].cpu_ms / cells['aiohttp'].cpu_ms:.2f}x CPU per stream")
    finally:
        for proc in procs.values():
            proc.terminate()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
