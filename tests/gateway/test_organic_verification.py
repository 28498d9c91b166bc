"""Organic answers verified and billed from the gateway's own count (real SmolLM2 miners, the real gateway over
loopback, real Redis streams, the real scorer): a miner honest on challenges that serves apps canned text at 10x
usage is convicted by the organic answers the gateway passed to the scorers and billed only what the gateway
counted; an honest miner's answers pass; a request that denied data collection is verified, then deleted."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import redis.asyncio as aioredis
from tests.gateway.conftest import GATEWAY, MINER_A, MINER_B, stack
from tests.validator.selective import APP_PROMPT, CANNED, INFLATION, SelectiveEngine

from veilnet.devnet.chain import DevnetChain
from veilnet.gateway.verification import OrganicVerifier
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.scoring import ScoreParams, update_scores
from veilnet.settings import ValidatorSettings
from veilnet.store.scores import ScoreStore
from veilnet.store.validator_pipeline import ChallengeRecord, ValidatorPipeline
from veilnet.validator import ValidatorContext, run_scorer
from veilnet.validator.service import score_answer

SMOL = "SmolLM2-135M-Instruct"
pytestmark = [pytest.mark.model]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


async def _ask(client: openai.AsyncOpenAI, miner: str, prompt: str, *, stream: bool, deny: bool = False,
               ) -> tuple[str, Any]:
    provider: dict[str, Any] = {"only": [miner]}
    if deny:
        provider["data_collection"] = "deny"
    ask: dict[str, Any] = {"model": SMOL, "messages": [{"role": "user", "content": prompt}], "max_tokens": 24,
                           "temperature": 0.0, "extra_body": {"provider": provider}}
    if not stream:
        answer = await client.chat.completions.create(**ask)
        return answer.choices[0].message.content or "", answer.usage
    text, usage = [], None
    async for chunk in await client.chat.completions.create(**ask, stream=True,
                                                            stream_options={"include_usage": True}):
        text.extend(c.delta.content or "" for c in chunk.choices)
        usage = chunk.usage or usage
    return "".join(text), usage


async def test_organic_answers_convict_the_selective_cheat_and_bill_from_the_gateways_count(
    tmp_path: Path, redis_client: aioredis.Redis, cache: Path,
) -> None:
    pipeline = ValidatorPipeline(redis_client, GATEWAY.ss58_address, 1, consumer="scorer-test")
    async with LlamaCppEngine([SMOL], cache_dir=cache, concurrency=2, threads=1, tokenizer=True) as engine:
        tokenizer = await engine.tokenizer(SMOL)
        cheat = SelectiveEngine(engine)
        async with OrganicVerifier(pipeline, GATEWAY.ss58_address, rate=1.0, flush_seconds=0.05) as verifier:
            async with stack(tmp_path, redis_client, engine=engine, miner_engines={MINER_A.ss58_address: cheat},
                             verifier=verifier,
                             tokenizers={SMOL: tokenizer}) as s:
                client: openai.AsyncOpenAI = s["client"]
                cheated = [await _ask(client, MINER_A.ss58_address, f"{APP_PROMPT} 3.", stream=stream)
                           for stream in (False, True)]
                honest = [await _ask(client, MINER_B.ss58_address, "What is a cat?", stream=False),
                          await _ask(client, MINER_B.ss58_address, "Secret: my plan for Tuesday.", stream=True,
                                     deny=True)]
                samples = await s["organic"].read(100)
        prompt = len(await tokenizer.chat_prompt([{"role": "user", "content": f"{APP_PROMPT} 3."}]))
        canned = len(await tokenizer.text_tokens(CANNED))  # and the end of generation when it "stopped"
        assert cheat.cheated == 2
        for text, usage in cheated:  # the app got canned text, billed as the gateway counts it, not at 10x
            assert text == CANNED
            assert usage.prompt_tokens == prompt and usage.completion_tokens in (canned, canned + 1)
        for text, usage in honest:
            assert text and text != CANNED and 0 < usage.completion_tokens <= 24
        # the denied request never reaches the organic stream challenges replay from
        assert not any("Tuesday" in sample["request"] for sample in samples)

        async with DevnetChain(None) as chain, aiohttp.ClientSession() as http:
            ctx = ValidatorContext(keypair=GATEWAY, chain=chain, netuid=1, reference=engine, http=http,
                                   scores=ScoreStore(redis_client, GATEWAY.ss58_address, 1),
                                   settings=ValidatorSettings(verify_rate=0.0, reference_models=[SMOL]),
                                   pipeline=pipeline)
            entries = await redis_client.xrange(pipeline.answers)
            assert len(entries) == 4
            tampered = ChallengeRecord.from_json(entries[0][1][b"record"])
            assert tampered.signed is not None and tampered.observation.miner == MINER_A.ss58_address
            body = base64.b64decode(tampered.signed.body).replace(CANNED.encode(), b"Paris is in France, yes.")
            forged = ChallengeRecord(tampered.observation, tampered.request, None, None,
                                     tampered.signed.model_copy(update={"body": base64.b64encode(body).decode()}))
            assert (await score_answer(ctx, forged)).verified is None  # only what the miner signed convicts it

            scorer = asyncio.create_task(run_scorer(ctx))
            try:
                for _ in range(1200):
                    observations, _ = await pipeline.take_observations()
                    if len(observations) == 4:
                        break
                    await asyncio.sleep(0.1)
            finally:
                scorer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scorer
    assert len(observations) == 4 and {o.kind for o in observations} == {"audit"}
    verdicts = {(o.miner, o.verified) for o in observations}
    assert verdicts == {(MINER_A.ss58_address, False), (MINER_B.ss58_address, True)}
    # the private answer is deleted once verified; the others stay for the stream's cap
    left = [ChallengeRecord.from_json(fields[b"record"]) for _, fields in await redis_client.xrange(pipeline.answers)]
    assert len(left) == 3 and not any(r.private for r in left)
    assert not any("Tuesday" in json.dumps(r.request) for r in left)
    states = update_scores({}, observations, 1, ScoreParams())
    assert states[MINER_A.ss58_address].banned_until >= 1 and states[MINER_A.ss58_address].ema == 0
    assert states[MINER_B.ss58_address].banned_until < 1
    assert INFLATION > 1
