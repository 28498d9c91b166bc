"""Embeddings challenges on the devnet chain: the challenger asks miners that serve a reference model's
embeddings for them, and the scorer passes the honest miner's vectors and fails a miner that returns one
cached vector for every text (while reporting the true usage)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from bittensor_wallet import Keypair
from tests.conftest import serve_asgi

from veilnet.chain.types import RAO_PER_TAO
from veilnet.devnet.chain import DevnetChain
from veilnet.miner import MetagraphHolder, MinerContext, create_miner_app
from veilnet.models.engine import ModelInfo
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.relay import RelayClient
from veilnet.settings import EpistulaSettings, MinerSettings, ValidatorSettings
from veilnet.store.scores import ScoreStore
from veilnet.store.validator_pipeline import ValidatorPipeline
from veilnet.validator import ValidatorContext, run_challenger
from veilnet.validator.asking import challenge_client
from veilnet.validator.service import score_answer

SMOL = "SmolLM2-135M-Instruct"
OWNER_C, OWNER_H = Keypair.create_from_uri("//EmbOwnerCold"), Keypair.create_from_uri("//EmbOwnerHot")
VAL_C, VAL_H = Keypair.create_from_uri("//EmbValCold"), Keypair.create_from_uri("//EmbValHot")
HONEST = Keypair.create_from_uri("//EmbHonestCold"), Keypair.create_from_uri("//EmbHonestHot")
CACHER = Keypair.create_from_uri("//EmbCacherCold"), Keypair.create_from_uri("//EmbCacherHot")

pytestmark = pytest.mark.model


class CachedVectorEngine:
    """The cheater: one vector for every text (embedded once), with the usage the real input would cost."""

    def __init__(self, inner: LlamaCppEngine) -> None:
        self.inner = inner

    def models(self) -> list[ModelInfo]:
        return self.inner.models()

    async def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self.inner.chat(request)

    def chat_stream(self, request: dict[str, Any]) -> Any:
        return self.inner.chat_stream(request)

    async def completion(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self.inner.completion(request)

    def completion_stream(self, request: dict[str, Any]) -> Any:
        return self.inner.completion_stream(request)

    async def embeddings(self, request: dict[str, Any]) -> dict[str, Any]:
        honest = await self.inner.embeddings(request)
        cached = (await self.inner.embeddings({"model": SMOL, "input": "lorem ipsum"}))["data"][0]["embedding"]
        for item in honest["data"]:
            item["embedding"] = cached
        return honest


async def test_embeddings_challenges_verify_honest_vectors_and_catch_a_cached_one(
    tmp_path: Path, redis_client: aioredis.Redis,
) -> None:
    engine = LlamaCppEngine([SMOL], cache_dir=tmp_path / "models", concurrency=2, embedding_models=[SMOL])
    reference = LlamaCppEngine([SMOL], cache_dir=tmp_path / "models", concurrency=1, embedding_models=[SMOL])
    for loading in (engine, reference):
        await asyncio.to_thread(loading.load)
    async with DevnetChain(None, block_time=0.1) as chain, contextlib.AsyncExitStack() as stack, \
            aiohttp.ClientSession() as http, RelayClient() as relay:
        for cold in (OWNER_C, VAL_C, HONEST[0], CACHER[0]):
            await chain.fund(cold.ss58_address, 10_000 * RAO_PER_TAO)
        netuid = await chain.register_subnet(OWNER_C, OWNER_H.ss58_address)
        for name, value in (("tempo", 10), ("max_regs_per_block", 10), ("target_regs_per_interval", 10)):
            await chain.sudo_set_hyperparameter(netuid, name, value)
        await chain.burned_register(netuid, VAL_C, VAL_H.ss58_address)
        await chain.add_stake(netuid, VAL_C, VAL_H.ss58_address, 1_000 * RAO_PER_TAO)
        for (cold, hot), miner_engine in ((HONEST, engine), (CACHER, CachedVectorEngine(engine))):
            await chain.burned_register(netuid, cold, hot.ss58_address)
            holder = MetagraphHolder(await chain.get_metagraph(netuid))
            refresher = asyncio.create_task(holder.refresh_forever(chain, netuid, 0.2))
            stack.callback(refresher.cancel)
            ctx = MinerContext(
                keypair=hot, engine=miner_engine, redis=redis_client, settings=MinerSettings(capacity_per_window=10_000),
                metagraph=holder, epistula=EpistulaSettings(),
            )
            url = await stack.enter_async_context(serve_asgi(create_miner_app(ctx), lifespan="off"))
            await chain.serve_axon(netuid, hot, ip="127.0.0.1", port=int(url.rsplit(":", 1)[1]))
        # the validator's permit comes with the next epoch; the miners see it within a refresh
        await chain.wait_for_block(await chain.get_next_epoch_block(netuid) + 3, timeout=60)
        validator = ValidatorContext(
            keypair=VAL_H, chain=chain, netuid=netuid, reference=reference, http=http,
            scores=ScoreStore(redis_client, VAL_H.ss58_address, netuid),
            settings=ValidatorSettings(verify_rate=1.0, reference_models=[SMOL], embedding_share=1.0,
                                       challenges_per_window=30, probe_max_tokens=16, probe_concurrency=1,
                                       probe_window=2.0),  # one worker: the engine keeps up
            pipeline=ValidatorPipeline(redis_client, VAL_H.ss58_address, netuid), rng=random.Random(3),
            miners=challenge_client(VAL_H, relay),
        )
        challenger = asyncio.create_task(run_challenger(validator, round_interval=0.2))
        records: list[Any] = []
        deadline = asyncio.get_running_loop().time() + 120
        try:
            while asyncio.get_running_loop().time() < deadline:
                # the challenges (the challenger's probe rounds, chat and embeddings, share the stream)
                records += [record for _, record in await validator.pipeline.claim_answers(count=10, block_ms=100)
                            if record.observation.kind == "challenge"]
                if {r.observation.miner for r in records if r.answer is not None} == {HONEST[1].ss58_address,
                                                                                     CACHER[1].ss58_address}:
                    break
        finally:
            challenger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await challenger
    assert records and {r.observation.task for r in records} == {"embeddings"}
    # both miners share one engine, and a full engine refuses: those challenges are failures with nothing to verify
    answered = [r for r in records if r.answer is not None]
    assert all(r.observation.outcome in ("error", "rate_limited", "timeout") and r.request is None
               for r in records if r.answer is None)
    verdicts: dict[str, set[bool | None]] = {HONEST[1].ss58_address: set(), CACHER[1].ss58_address: set()}
    for record in answered:
        assert record.request is not None and "input" in record.request
        observation = await score_answer(validator, record)
        verdicts[observation.miner].add(observation.verified)
        assert observation.ttft_ms is None  # embeddings do not count for speed
    assert verdicts[HONEST[1].ss58_address] == {True}
    assert verdicts[CACHER[1].ss58_address] == {False}
    # a scorer whose reference cannot embed leaves the answer unverified (missing), never failed or passed
    chat_only = dataclasses.replace(validator, reference=LlamaCppEngine([SMOL], cache_dir=tmp_path / "models"))
    unverified = await score_answer(chat_only, answered[0])
    assert unverified.verified is None and unverified.outcome == "ok"
