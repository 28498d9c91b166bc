"""The miner's own overhead (Epistula auth + Redis quota + aiohttp relay) against calling the same fast
streaming upstream directly, at concurrency 1, 16 and 64; then the embedded llama.cpp backend's tokens/s.

Two upstreams: "paced" streams 52 chunks 1 ms apart (1,000 tokens/s per stream, faster than any real
inference server per stream), "instant" writes them all at once (no inference at all: what remains is pure
HTTP work, which any proxy hop multiplies). Goal: through the miner at least 0.9x direct (paced). Beside it,
a bare aiohttp relay that checks nothing: the practical limit of any extra hop on the same machine. Targets are
interleaved over three rounds (req/s: the median round); CPU ms per stream is the relay process's own.
Run: .venv/bin/python bench/bench_miner.py — upstream, miner and load generator are separate processes.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import statistics
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from bench_gateway import run_bare_proxy
from bittensor_wallet import Keypair
from measure import Run, free_port, interleaved, wait_up

CHUNKS = 52
ROUNDS = 3
MINER = "//BenchMiner"
VALIDATOR = "//BenchValidator"
MODEL = "bench-model"


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


async def load(url: str, concurrency: int, seconds: float, signed: bool, miner_ss58: str) -> tuple[float, list[float]]:
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
                latencies.append((time.perf_counter() - start) * 1000)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return done / elapsed, latencies


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


def compare(label: str, pace_s: float, seconds: float = 4.0) -> None:
    upstream_port, miner_port, bare_port = free_port(), free_port(), free_port()
    procs = {
        "direct": multiprocessing.Process(target=run_upstream, args=(upstream_port, pace_s), daemon=True),
        "miner": multiprocessing.Process(target=run_miner, args=(miner_port, upstream_port), daemon=True),
        "bare": multiprocessing.Process(target=run_bare_proxy, args=(bare_port, upstream_port), daemon=True),
    }
    for proc in procs.values():
        proc.start()
    try:
        asyncio.run(wait_up(f"http://127.0.0.1:{upstream_port}/"))
        asyncio.run(wait_up(f"http://127.0.0.1:{miner_port}/health"))
        asyncio.run(wait_up(f"http://127.0.0.1:{bare_port}/health"))
        miner_ss58 = Keypair.create_from_uri(MINER).ss58_address
        urls = {"direct": f"http://127.0.0.1:{upstream_port}/v1/chat/completions",
                "miner": f"http://127.0.0.1:{miner_port}/v1/chat/completions",
                "bare": f"http://127.0.0.1:{bare_port}/v1/chat/completions"}
        print(f"{label} upstream: streams of {CHUNKS} chunks, {seconds:.0f} s per cell in {ROUNDS} interleaved rounds "
              "(req/s: median of the rounds); bare: an aiohttp relay with no checks; cpu: the miner's (the bare "
              "relay's) CPU ms per stream")
        print(f"{'concurrency':>11} {'direct req/s':>13} {'miner req/s':>12} {'ratio':>6} {'direct p50 ms':>14} "
              f"{'miner p50 ms':>13} {'miner cpu':>10} {'bare req/s':>11} {'bare cpu':>9}")
        for concurrency in (1, 16, 64):
            def runner(name: str, c: int = concurrency) -> Run:
                return lambda s: asyncio.run(load(urls[name], c, s, name == "miner", miner_ss58))

            cells = interleaved({name: runner(name) for name in urls},
                                {name: proc.pid or 0 for name, proc in procs.items()}, seconds, ROUNDS)
            direct, miner, bare = cells["direct"], cells["miner"], cells["bare"]
            print(f"{concurrency:>11} {direct.rate:>13.0f} {miner.rate:>12.0f} {miner.rate / direct.rate:>6.2f} "
                  f"{statistics.median(direct.latencies):>14.1f} {statistics.median(miner.latencies):>13.1f} "
                  f"{miner.cpu_ms:>10.2f} {bare.rate:>11.0f} {bare.cpu_ms:>9.2f}")
    finally:
        for proc in procs.values():
            proc.terminate()


def main() -> None:
    compare("paced (1 ms/chunk)", 0.001)
    compare("instant", 0.0)
    print("goal: ratio >= 0.9 against the paced upstream")
    print(f"embedded llama.cpp (SmolLM2-135M-Instruct, 2 threads): {tokens_per_second():.0f} tokens/s")


if __name__ == "__main__":
    main()
