"""The miner's own overhead (Epistula auth + Redis quota + aiohttp relay) against calling the same fast
streaming upstream directly, at concurrency 1, 16 and 64; then the embedded llama.cpp backend's tokens/s.

Two upstreams: "paced" streams 52 chunks 1 ms apart (1,000 tokens/s per stream, faster than any real
inference server per stream), "instant" writes them all at once (no inference at all: what remains is pure
HTTP work, which any proxy hop multiplies). Goal: through the miner at least 0.9x direct (paced).
Run: .venv/bin/python bench/bench_miner.py — upstream, miner and load generator are separate processes.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import socket
import statistics
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from bittensor_wallet import Keypair

CHUNKS = 52
MINER = "//BenchMiner"
VALIDATOR = "//BenchValidator"
MODEL = "bench-model"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_upstream(port: int, pace_s: float = 0.0) -> None:
    chunk = json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
                        "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}]}).encode()

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(CHUNKS):
            await response.write(b"data: " + chunk + b"\n\n")
            if pace_s:
                await asyncio.sleep(pace_s)
        await response.write(b"data: [DONE]\n\n")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def run_miner(port: int, upstream_port: int) -> None:

    from veilnet.chain.types import Metagraph, NeuronInfo
    from veilnet.miner import MetagraphHolder, MinerContext, create_miner_app
    from veilnet.models.upstream import OpenAIUpstreamEngine
    from veilnet.serving import serve
    from veilnet.settings import EpistulaSettings, MinerSettings, RedisSettings
    from veilnet.store.redis import open_redis

    miner, validator = Keypair.create_from_uri(MINER), Keypair.create_from_uri(VALIDATOR)

    def neuron(uid: int, key: Keypair, permit: bool) -> NeuronInfo:
        return NeuronInfo(uid=uid, hotkey=key.ss58_address, coldkey=key.ss58_address, stake=1000, axon=None,
                          validator_permit=permit, incentive=0, dividends=0, emission=0, consensus=0,
                          validator_trust=0, last_update=0, block_at_registration=0, active=True)

    async def main() -> None:
        async with open_redis(RedisSettings()) as redis, OpenAIUpstreamEngine(
            f"http://127.0.0.1:{upstream_port}/v1", [MODEL]
        ) as engine:
            ctx = MinerContext(
                keypair=miner, engine=engine, redis=redis,
                metagraph=MetagraphHolder(Metagraph(1, 0, (neuron(0, miner, False), neuron(1, validator, True)))),
                settings=MinerSettings(capacity_per_window=10**9, max_concurrency=1024, max_queue=1024),
                epistula=EpistulaSettings(),
            )
            await serve(create_miner_app(ctx), host="127.0.0.1", port=port, log_level="critical")  # as the CLI

    import uvloop

    uvloop.run(main())


async def load(url: str, concurrency: int, seconds: float, signed: bool, miner_ss58: str) -> tuple[float, float]:
    from veilnet.protocol.epistula import sign_request

    validator = Keypair.create_from_uri(VALIDATOR)
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
    done = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                headers = {"Content-Type": "application/json"}
                if signed:
                    headers.update(sign_request(validator, body, miner_ss58))
                start = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}: {await response.text()}")
                    async for _ in response.content:
                        pass
                latencies.append(time.perf_counter() - start)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return done / elapsed, statistics.median(latencies) * 1000


async def wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def tokens_per_second() -> float:
    from veilnet.models.llamacpp import LlamaCppEngine

    async def main() -> float:
        async with LlamaCppEngine(["SmolLM2-135M-Instruct"], cache_dir=Path("/tmp/veilnet-bench-models")) as engine:
            request = {"model": "SmolLM2-135M-Instruct", "max_tokens": 128, "temperature": 0,
                       "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}]}
            start = time.perf_counter()
            result = await engine.chat(request)
            return float(result["usage"]["completion_tokens"]) / (time.perf_counter() - start)

    return asyncio.run(main())


def compare(label: str, pace_s: float) -> None:
    upstream_port, miner_port = free_port(), free_port()
    procs = [
        multiprocessing.Process(target=run_upstream, args=(upstream_port, pace_s), daemon=True),
        multiprocessing.Process(target=run_miner, args=(miner_port, upstream_port), daemon=True),
    ]
    for proc in procs:
        proc.start()
    try:
        asyncio.run(wait_up(f"http://127.0.0.1:{upstream_port}/"))
        asyncio.run(wait_up(f"http://127.0.0.1:{miner_port}/health"))
        miner_ss58 = Keypair.create_from_uri(MINER).ss58_address
        print(f"{label} upstream: streams of {CHUNKS} chunks, 4 s per cell")
        print(f"{'concurrency':>11} {'direct req/s':>13} {'miner req/s':>12} {'ratio':>6} {'direct p50 ms':>14} {'miner p50 ms':>13}")
        for concurrency in (1, 16, 64):
            direct, direct_p50 = asyncio.run(load(f"http://127.0.0.1:{upstream_port}/v1/chat/completions",
                                                  concurrency, 4, False, miner_ss58))
            via, via_p50 = asyncio.run(load(f"http://127.0.0.1:{miner_port}/v1/chat/completions",
                                            concurrency, 4, True, miner_ss58))
            print(f"{concurrency:>11} {direct:>13.0f} {via:>12.0f} {via / direct:>6.2f} {direct_p50:>14.1f} {via_p50:>13.1f}")
    finally:
        for proc in procs:
            proc.terminate()


def main() -> None:
    compare("paced (1 ms/chunk)", 0.001)
    compare("instant", 0.0)
    print("goal: ratio >= 0.9 against the paced upstream")
    print(f"embedded llama.cpp (SmolLM2-135M-Instruct, 2 threads): {tokens_per_second():.0f} tokens/s")


if __name__ == "__main__":
    main()
