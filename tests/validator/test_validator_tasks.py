"""The validator's side of the task interface, in isolation: a challenge larger than the miner takes is not
sent (an honest miner would refuse it, so it must not count against it), and a task whose verifier fails
leaves the answer unverified instead of stopping the scorer."""

from __future__ import annotations

import random
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from bittensor_wallet import Keypair
from pydantic import JsonValue

from veilnet.chain.types import AxonInfo, NeuronInfo
from veilnet.relay import RelayClient
from veilnet.scoring import Observation
from veilnet.settings import ValidatorSettings
from veilnet.store.organic import RequestCounter
from veilnet.store.scores import ScoreStore
from veilnet.store.validator_pipeline import ChallengeRecord, ValidatorPipeline
from veilnet.tasks.builtin.orientation import OrientationTask
from veilnet.tasks.interface import VerifyTools
from veilnet.tasks.orientation import ORIENTATION_MODEL
from veilnet.tasks.verdict import Verdict
from veilnet.validator import ValidatorContext, service
from veilnet.validator.asking import challenge_client

VAL = Keypair.create_from_uri("//TaskValidatorUnit")
MINER = Keypair.create_from_uri("//TaskMinerUnit")


def context(redis: aioredis.Redis, http: aiohttp.ClientSession) -> ValidatorContext:
    return ValidatorContext(
        keypair=VAL, chain=None, netuid=1, reference=None, http=http,  # type: ignore[arg-type]
        scores=ScoreStore(redis, VAL.ss58_address, 1), settings=ValidatorSettings(verify_rate=1.0),
        pipeline=ValidatorPipeline(redis, VAL.ss58_address, 1), rng=random.Random(0),
        synthetic_counts=RequestCounter(redis, "synthetic", VAL.ss58_address, 1),
    )


def miner_neuron() -> NeuronInfo:
    return NeuronInfo(uid=1, hotkey=MINER.ss58_address, coldkey=MINER.ss58_address, stake=0,
                      axon=AxonInfo(ip="127.0.0.1", port=9), validator_permit=False, incentive=0, dividends=0,
                      emission=0, consensus=0, validator_trust=0, last_update=0, block_at_registration=0,
                      active=True)


async def test_a_challenge_larger_than_the_miner_takes_is_not_sent(redis_client: aioredis.Redis) -> None:
    async with aiohttp.ClientSession() as http, RelayClient() as relay:
        ctx = context(redis_client, http)
        ctx.miners = challenge_client(VAL, relay, ctx.synthetic_counts, timeout=5.0)
        record = await service.ask_miner(ctx, miner_neuron(), ORIENTATION_MODEL, task="orientation",
                                         max_body_bytes=64 * 1024)
        assert record is None  # four pages are ~3 MB; nothing was sent, so nothing counts
        assert ctx.synthetic_counts is not None and await ctx.synthetic_counts.used(MINER.ss58_address, 0) == 0
        # the same challenge within the limit is sent (to a port nobody listens on: the miner's failure)
        sent = await service.ask_miner(ctx, miner_neuron(), ORIENTATION_MODEL, task="orientation",
                                       max_body_bytes=8 * 1024 * 1024)
        assert sent is not None and sent.observation.outcome == "error"


class BrokenVerifier(OrientationTask):
    async def verify(self, request: Any, truth: JsonValue, answer: object, tools: VerifyTools) -> Verdict:
        raise KeyError("a plugin's bug")


async def test_a_verifier_that_fails_leaves_the_answer_unverified(redis_client: aioredis.Redis,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "task_named", lambda name: BrokenVerifier())
    async with aiohttp.ClientSession() as http:
        ctx = context(redis_client, http)
        observation = Observation(miner=MINER.ss58_address, model=ORIENTATION_MODEL, task="orientation",
                                  outcome="ok")
        record = ChallengeRecord(observation, {"model": ORIENTATION_MODEL, "images": ["x"]}, {"data": []}, [0])
        scored = await service.score_answer(ctx, record)
    assert scored == observation and scored.verified is None
