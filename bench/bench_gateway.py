"""The gateway against the proxies people run today, all in front of the same fast fake streaming upstream.

Targets, each its own process on loopback, each relaying the same 52-chunk SSE stream:
  direct   the upstream itself (what the added latencies are measured against)
  bare     an aiohttp passthrough proxy: no auth, no routing, no ledger — the practical limit
  gateway  veilnet's gateway as `veilnet gateway run` builds it: API key, per-key rate limits (Redis), routing,
           circuit breaker, Epistula signature per request, usage ledger (SQLite), organic sampling (Redis).
           The upstream plays the miner (it answers /capacity; the gateway signs, it does not check).
  litellm  LiteLLM's proxy (`litellm --config`), when installed: set LITELLM_BIN or run bench/setup-litellm.
At concurrency 1, 16 and 64, targets interleaved over three rounds: streams/s (the median round), p50/p99 stream
latency and what it adds over direct, and each target process's CPU ms per stream.
Then: streamed tokens (SSE chunks) per second through one gateway process and through the bare proxy, with
long streams (2,000 chunks each) at concurrency 16; and 1,000 concurrent streams (each ~1 s long) through one
gateway process, errors counted, peak RSS.
Goals: gateway >= 0.95x the bare proxy's streams/s at 1, 16 and 64 streams, <= 0.5 ms added p50 at one
stream, >= 3x LiteLLM's throughput, >= 20,000 streamed tokens/s, 1,000 concurrent streams within 160 MiB.
The upstream signs its streams as a miner does (Epistula's last line), so the gateway relays what it would.
Run: .venv/bin/python bench/bench_gateway.py [seconds per cell, default 4]
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from bittensor_wallet import Keypair
from measure import Run, free_port, interleaved, percentile, wait_up

CHUNKS = 52
LONG_CHUNKS = 2000  # the tokens/s cell's streams
ROUNDS = 3
MODEL = "bench-model"
MINER = "//BenchGatewayMiner"
GATEWAY = "//BenchGateway"
LITELLM_KEY = "sk-bench-litellm"
BODY = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": True,
                   "stream_options": {"include_usage": True}}).encode()


def run_upstream(port: int, pace_s: float) -> None:
    """An OpenAI-style streaming upstream that is also a miner enough for the gateway (/capacity, and each
    stream ends with its Epistula signature line). A body with ``"max_tokens": N`` gets N chunks."""
    from veilnet.protocol.epistula import StreamSigner

    miner = Keypair.create_from_uri(MINER)
    chunk = json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
                        "choices": [{"index": 0, "delta": {"content": "tok "}, "finish_reason": None}]}).encode()
    usage = json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": MODEL, "choices": [],
                        "usage": {"prompt_tokens": 8, "completion_tokens": CHUNKS,
                                  "total_tokens": 8 + CHUNKS}}).encode()
    capacity = {"hotkey": Keypair.create_from_uri(MINER).ss58_address, "models": [{
        "id": MODEL, "capacity_per_window": 10**9, "price_input_per_million": 0.1, "price_output_per_million": 0.2,
        "context_length": 8192}]}

    async def chat(request: web.Request) -> web.StreamResponse:
        chunks = json.loads(await request.read()).get("max_tokens") or CHUNKS
        signer = StreamSigner(miner, request.headers.get("Epistula-Uuid", "bench"), "caller")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(chunks):
            await response.write(signer.feed(b"data: " + chunk + b"\n\n"))
            if pace_s:
                await asyncio.sleep(pace_s)
        await response.write(signer.feed(b"data: " + usage + b"\n\n"))
        await response.write(signer.feed(b"data: [DONE]\n\n") + signer.final_line())
        return response

    async def describe(_: web.Request) -> web.Response:
        return web.json_response(capacity)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/capacity", describe)
    app.router.add_get("/health", describe)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=4096)


def run_bare_proxy(port: int, upstream_port: int) -> None:
    """The practical limit: read the body, POST it upstream with one shared aiohttp session, relay bytes."""
    target = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"

    async def relay(request: web.Request) -> web.StreamResponse:
        session: aiohttp.ClientSession = request.app["session"]
        async with session.post(target, data=await request.read(),
                                headers={"Content-Type": "application/json"}) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            async for data in upstream.content.iter_any():
                await response.write(data)
            return response

    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def session_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        app["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        yield
        await app["session"].close()

    app = web.Application()
    app.cleanup_ctx.append(session_ctx)
    app.router.add_post("/v1/chat/completions", relay)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=4096)


def run_gateway(port: int, upstream_port: int, secret_file: str) -> None:
    import contextlib
    import random

    import uvloop

    from veilnet.chain.types import AxonInfo, Metagraph, NeuronInfo
    from veilnet.gateway import GatewayContext, create_gateway_app
    from veilnet.gateway.directory import MinerDirectory
    from veilnet.gateway.run import open_miner_http
    from veilnet.relay import RelayClient
    from veilnet.serving import serve
    from veilnet.settings import GatewaySettings, RedisSettings
    from veilnet.store.keys import KeyStore
    from veilnet.store.organic import OrganicStream, RequestCounter
    from veilnet.store.ratelimit import KeyRateLimiter
    from veilnet.store.redis import open_redis
    from veilnet.store.sql import open_database

    gateway, miner = Keypair.create_from_uri(GATEWAY), Keypair.create_from_uri(MINER)

    def neuron(uid: int, key: Keypair, permit: bool, axon: AxonInfo | None) -> NeuronInfo:
        return NeuronInfo(uid=uid, hotkey=key.ss58_address, coldkey=key.ss58_address, stake=1000, axon=axon,
                          validator_permit=permit, incentive=0, dividends=0, emission=0, consensus=0,
                          validator_trust=0, last_update=0, block_at_registration=0, active=True)

    async def main() -> None:
        settings = GatewaySettings()  # the defaults `veilnet gateway run` uses, limits raised for the load
        async with contextlib.AsyncExitStack() as stack:
            redis = await stack.enter_async_context(open_redis(RedisSettings()))
            sql = await stack.enter_async_context(
                open_database(f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/gateway.sqlite3"))
            http = await stack.enter_async_context(open_miner_http())
            directory = MinerDirectory(http, gateway.ss58_address)
            await directory.refresh(Metagraph(1, 0, (
                neuron(0, gateway, True, None),
                neuron(1, miner, False, AxonInfo(ip="127.0.0.1", port=upstream_port)))))
            assert directory.offers, "the gateway found no miner"
            keys = await stack.enter_async_context(KeyStore(sql))
            secret, _ = await keys.create("bench", credit_usd=1e9)
            Path(secret_file).write_text(secret)

            async def scores() -> dict[str, float]:
                return {}

            ctx = GatewayContext(
                keypair=gateway, keys=keys, directory=directory, http=http, scores=scores, rng=random.Random(0),
                relay=await stack.enter_async_context(RelayClient()),
                ratelimit=await stack.enter_async_context(
                    KeyRateLimiter(redis, requests_per_minute=10**9, tokens_per_minute=10**12)),
                organic=await stack.enter_async_context(
                    OrganicStream(redis, 1, sample_rate=settings.organic_sample_rate)),
                organic_counts=await stack.enter_async_context(
                    RequestCounter(redis, "organic", gateway.ss58_address, 1)),
            )
            # served as `veilnet gateway run` serves it
            await serve(create_gateway_app(ctx), host="127.0.0.1", port=port, log_level="critical", backlog=4096)

    uvloop.run(main())


def litellm_binary() -> str | None:
    candidates = [os.environ.get("LITELLM_BIN"), str(Path(__file__).with_name(".litellm") / "bin" / "litellm"),
                  shutil.which("litellm")]
    return next((c for c in candidates if c and Path(c).is_file()), None)


def start_litellm(binary: str, port: int, upstream_port: int) -> subprocess.Popen[bytes]:
    config = Path(tempfile.mkdtemp()) / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: http://127.0.0.1:{upstream_port}/v1\n"
        "      api_key: unused\n"
        "litellm_settings:\n"
        "  drop_params: true\n"
    )
    env = {**os.environ, "LITELLM_MASTER_KEY": LITELLM_KEY, "LITELLM_LOCAL_MODEL_COST_MAP": "True",
           "LITELLM_LOG": "ERROR"}
    return subprocess.Popen([binary, "--config", str(config), "--port", str(port), "--num_workers", "1"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def load(url: str, headers: dict[str, str], concurrency: int, seconds: float) -> tuple[float, list[float]]:
    """Streams/s and each stream's latency (ms, request to last byte) with ``concurrency`` clients."""
    done = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                async with session.post(url, data=BODY, headers=headers) as response:
                    if response.status != 200:
                        raise RuntimeError(f"{url}: HTTP {response.status}: {(await response.text())[:300]}")
                    async for _ in response.content.iter_any():
                        pass
                latencies.append((time.perf_counter() - start) * 1000)
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return done / elapsed, latencies


async def tokens_per_second(url: str, headers: dict[str, str], concurrency: int, seconds: float) -> float:
    """SSE chunks per second arriving at ``concurrency`` clients reading long streams (each LONG_CHUNKS)."""
    body = json.dumps({**json.loads(BODY), "max_tokens": LONG_CHUNKS}).encode()
    chunks = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def reader() -> None:
            nonlocal chunks
            while time.perf_counter() < deadline:
                async with session.post(url, data=body, headers=headers) as response:
                    if response.status != 200:
                        raise RuntimeError(f"{url}: HTTP {response.status}: {(await response.text())[:300]}")
                    tail = b""
                    async for data in response.content.iter_any():
                        chunks += (tail + data).count(b"data: {") - tail.count(b"data: {")
                        tail = data[-8:]

        started = time.perf_counter()
        await asyncio.gather(*(reader() for _ in range(concurrency)))
        return chunks / (time.perf_counter() - started)


async def many_streams(url: str, headers: dict[str, str], count: int) -> tuple[int, int, float, list[str]]:
    """``count`` streams opened at once; (completed, failed, seconds, first errors)."""
    errors: list[str] = []
    ok = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def one() -> None:
            nonlocal ok
            try:
                async with session.post(url, data=BODY, headers=headers) as response:
                    text = await response.text()
                if response.status != 200 or "data: [DONE]" not in text[-400:]:
                    errors.append(f"HTTP {response.status}: {text[-200:]}")
                else:
                    ok += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                errors.append(repr(exc))

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        return ok, len(errors), time.perf_counter() - start, errors[:3]


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    """The process' peak resident memory (``VmRSS``: now) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(seconds: float) -> None:
    ports = {name: free_port() for name in ("upstream", "bare", "gateway", "litellm", "slow", "gateway_slow")}
    secret_file, slow_secret_file = tempfile.mktemp(), tempfile.mktemp()
    procs = [
        multiprocessing.Process(target=run_upstream, args=(ports["upstream"], 0.0), daemon=True),
        multiprocessing.Process(target=run_bare_proxy, args=(ports["bare"], ports["upstream"]), daemon=True),
        multiprocessing.Process(target=run_gateway, args=(ports["gateway"], ports["upstream"], secret_file),
                                daemon=True),
    ]
    for proc in procs:
        proc.start()
    litellm = None
    binary = litellm_binary()
    if binary is not None:
        litellm = start_litellm(binary, ports["litellm"], ports["upstream"])
    try:
        asyncio.run(wait_up(f"http://127.0.0.1:{ports['upstream']}/health"))
        asyncio.run(wait_up(f"http://127.0.0.1:{ports['bare']}/health"))
        asyncio.run(wait_up(f"http://127.0.0.1:{ports['gateway']}/health"))
        while not Path(secret_file).exists() or not Path(secret_file).read_text():
            time.sleep(0.05)
        targets = {
            "direct": (f"http://127.0.0.1:{ports['upstream']}", {}),
            "bare": (f"http://127.0.0.1:{ports['bare']}", {}),
            "gateway": (f"http://127.0.0.1:{ports['gateway']}",
                        {"Authorization": f"Bearer {Path(secret_file).read_text()}"}),
        }
        if litellm is not None:
            asyncio.run(wait_up(f"http://127.0.0.1:{ports['litellm']}/health/liveliness", 180))
            targets["litellm"] = (f"http://127.0.0.1:{ports['litellm']}", {"Authorization": f"Bearer {LITELLM_KEY}"})
        pids = {"direct": procs[0].pid or 0, "bare": procs[1].pid or 0, "gateway": procs[2].pid or 0,
                "litellm": litellm.pid if litellm is not None else 0}
        print(f"streams of {CHUNKS} chunks from an instant upstream; {seconds:.0f} s per cell in {ROUNDS} rounds, "
              f"targets interleaved (streams/s: median of the rounds); {os.cpu_count()} cores; every target its "
              "own process; cpu: the target process's CPU ms per stream")
        if litellm is None:
            print("litellm: not installed (bench/setup-litellm, or LITELLM_BIN=/path/to/litellm)")
        print(f"{'target':<9}{'conc':>5}{'streams/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'+p50 ms':>9}{'+p99 ms':>9}"
              f"{'cpu ms':>8}{'vs bare':>9}{'vs litellm':>11}")
        for concurrency in (1, 16, 64):
            def runner(base: str, headers: dict[str, str], c: int = concurrency) -> Run:
                headers = {**headers, "Content-Type": "application/json"}
                return lambda s: asyncio.run(load(f"{base}/v1/chat/completions", headers, c, s))

            cells = interleaved({name: runner(*target) for name, target in targets.items()}, pids, seconds, ROUNDS)
            direct = cells["direct"].latencies
            for name, cell in cells.items():
                lat = cell.latencies
                added = "" if name == "direct" else (f"{percentile(lat, 50) - percentile(direct, 50):>9.2f}"
                                                     f"{percentile(lat, 99) - percentile(direct, 99):>9.2f}")
                vs_bare = f"{cell.rate / cells['bare'].rate:>9.2f}" if name == "gateway" else ""
                vs_litellm = (f"{cell.rate / cells['litellm'].rate:>11.1f}"
                              if name == "gateway" and "litellm" in cells else "")
                print(f"{name:<9}{concurrency:>5}{cell.rate:>11.0f}{percentile(lat, 50):>9.2f}"
                      f"{percentile(lat, 99):>9.2f}{added:<18}{cell.cpu_ms:>8.2f}{vs_bare}{vs_litellm}")
        gateway_url, gateway_headers = targets["gateway"]
        bare_url, _ = targets["bare"]
        json_headers = {"Content-Type": "application/json"}
        rates = {}
        for name, base, headers in (("gateway", gateway_url, {**gateway_headers, **json_headers}),
                                    ("bare", bare_url, json_headers), ("gateway", gateway_url,
                                                                        {**gateway_headers, **json_headers})):
            rate = asyncio.run(tokens_per_second(f"{base}/v1/chat/completions", headers, 16, seconds))
            rates[name] = max(rates.get(name, 0.0), rate)  # the better of two gateway rounds, around the bare one
        print(f"streamed tokens (SSE chunks) per second, {LONG_CHUNKS}-chunk streams at concurrency 16, one process "
              f"each: gateway {rates['gateway']:,.0f}, bare proxy {rates['bare']:,.0f} "
              f"({rates['gateway'] / rates['bare']:.2f}x)")
        print("goals: gateway >= 0.95x bare at 1, 16 and 64 streams, <= 0.5 ms added p50 at 1, >= 3x litellm, "
              ">= 20,000 streamed tokens/s")
    finally:
        for proc in procs:
            proc.terminate()
        if litellm is not None:
            litellm.terminate()
            litellm.wait(10)

    # 1,000 concurrent streams, each ~1 s long (52 chunks 20 ms apart): one gateway process, the bare proxy beside it
    slow = [multiprocessing.Process(target=run_upstream, args=(ports["slow"], 0.02), daemon=True),
            multiprocessing.Process(target=run_gateway, args=(ports["gateway_slow"], ports["slow"], slow_secret_file),
                                    daemon=True),
            multiprocessing.Process(target=run_bare_proxy, args=(ports["bare"], ports["slow"]), daemon=True)]
    for proc in slow:
        proc.start()
    try:
        for port in (ports["slow"], ports["gateway_slow"], ports["bare"]):
            asyncio.run(wait_up(f"http://127.0.0.1:{port}/health"))
        while not Path(slow_secret_file).exists() or not Path(slow_secret_file).read_text():
            time.sleep(0.05)
        gateway_headers = {"Authorization": f"Bearer {Path(slow_secret_file).read_text()}",
                           "Content-Type": "application/json"}
        for name, port, headers, proc in (("gateway", ports["gateway_slow"], gateway_headers, slow[1]),
                                          ("bare", ports["bare"], {"Content-Type": "application/json"}, slow[2])):
            idle = rss_mb(proc.pid or 0, "VmRSS")
            ok, failed, took, errors = asyncio.run(
                many_streams(f"http://127.0.0.1:{port}/v1/chat/completions", headers, 1000))
            print(f"1000 concurrent streams (each ~{CHUNKS * 0.02:.1f} s) through one {name} process: {ok} completed, "
                  f"{failed} failed, all done in {took:.1f} s; RSS {idle:.0f} MiB idle, {rss_mb(proc.pid or 0):.0f} "
                  "MiB peak (goal for the gateway: all, within 160 MiB)")
            for error in errors:
                print(f"  error: {error}")
    finally:
        for proc in slow:
            proc.terminate()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 4.0)
