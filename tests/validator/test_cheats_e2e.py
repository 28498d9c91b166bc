"""End to end against cheating miners: the devnet chain, real miners over HTTP (real SmolLM2 where they
generate at all), the real validator (every role), incentive read from the chain's own epoch.

- EMPTY: a miner answering every request with no tokens and ``finish_reason: "stop"`` (it took 55 % of the
  incentive before answers were verified from the answer alone) earns nothing; the honest miner earns it all.
- SYBIL: one operator puts three hotkeys in front of ONE backend next to an honest miner with a backend of
  its own; together the three must earn no more than the honest hotkey (within 5 %). That needs measured,
  shared throughput in the scores (the "score" work: probe rounds hitting every miner at once); until it
  lands the test is an expected failure (it took 70 % before).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from tests.validator.subnet import SMOL, MinerSpec, Subnet, devnet_subnet, wait_epochs

from veilnet.models.engine import ModelInfo
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.settings import ValidatorSettings
from veilnet.store.scores import ScoreStore
from veilnet.validator import run_validator

pytestmark = [pytest.mark.model, pytest.mark.slow]


class EmptyEngine:
    """The EMPTY cheat: claims SmolLM2, generates nothing, answers every request with no tokens and
    ``finish_reason: "stop"`` (streamed or not)."""

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(SMOL, 8192)]

    def _head(self) -> dict[str, Any]:
        return {"id": "chatcmpl-empty", "created": int(time.time()), "model": SMOL}

    async def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        return {**self._head(), "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 20, "completion_tokens": 0, "total_tokens": 20}}

    async def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        head = {**self._head(), "object": "chat.completion.chunk"}
        yield {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        yield {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield {**head, "choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 0, "total_tokens": 20}}

    async def completion(self, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def completion_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        raise NotImplementedError

    async def embeddings(self, request: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError


@contextlib.asynccontextmanager
async def engines(tmp_path: Path, backends: int) -> AsyncIterator[tuple[list[LlamaCppEngine], LlamaCppEngine]]:
    """``backends`` SmolLM2 serving engines (two requests at a time each) and the validator's reference."""
    cache = tmp_path / "models"
    async with contextlib.AsyncExitStack() as stack:
        serving = [await stack.enter_async_context(LlamaCppEngine([SMOL], cache_dir=cache, concurrency=2, threads=1))
                   for _ in range(backends)]
        reference = await stack.enter_async_context(
            LlamaCppEngine([SMOL], cache_dir=cache, concurrency=1, tokenizer=True))
        yield serving, reference


@contextlib.asynccontextmanager
async def validating(net: Subnet, reference: LlamaCppEngine, **settings: Any) -> AsyncIterator[ScoreStore]:
    """The validator, every role in one process, while the block runs (``settings``: ValidatorSettings)."""
    chosen = ValidatorSettings(**{"verify_rate": 1.0, "reference_models": [SMOL], "challenges_per_window": 40,
                                  **settings})
    task = asyncio.create_task(run_validator(net.context(reference=reference, settings=chosen), round_interval=0.2))
    try:
        yield ScoreStore(net.redis, net.validator.ss58_address, net.netuid)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(store: ScoreStore, what: str, check: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        states, tempo = await store.load()
        if check(states, tempo):
            return
        await asyncio.sleep(0.2)
    pytest.fail(what)


async def test_a_miner_answering_nothing_earns_nothing(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with engines(tmp_path, 1) as ([honest], reference), devnet_subnet(
            redis_client, {"honest": MinerSpec(honest), "empty": MinerSpec(EmptyEngine())}, prefix="Empty") as net:
        await net.seed_organic()
        empty = net.hotkey("empty")
        async with validating(net, reference) as store:
            await until(store, "the validator never caught the empty miner",
                        lambda states, tempo: empty in states and states[empty].banned_until >= tempo >= 1)
            await net.until_weights(lambda weights: weights.get(net.hotkey("honest"), 0) > 0)  # set after the ban
            await wait_epochs(net.chain, net.netuid, 2)
            incentive = await net.incentive()
    assert incentive["empty"] == 0
    assert incentive["honest"] > 0


@pytest.mark.timeout(240)
@pytest.mark.xfail(reason="not yet true in real processes: with both backends on one 2-core machine the three "
                          "Sybil hotkeys took 1.65x the honest hotkey's incentive (one probe round in the test's "
                          "two tempos; the backends' CPU shares move with their load); the pure scoring and the "
                          "simulator hold it within 5 %", run=False)
async def test_three_hotkeys_on_one_backend_earn_no_more_than_one(tmp_path: Path,
                                                                  redis_client: aioredis.Redis) -> None:
    async with engines(tmp_path, 2) as ([own, shared], reference), devnet_subnet(
            redis_client, {"honest": MinerSpec(own), **{f"sybil{i}": MinerSpec(shared) for i in range(3)}},
            prefix="Sybil") as net:
        await net.seed_organic()
        # four hotkeys on two 2-core backends: fewer challenges, half of them verified, so the machine keeps up
        async with validating(net, reference, challenges_per_window=20, verify_rate=0.5) as store:
            await until(store, "the validator never scored every hotkey over two tempos",
                        lambda states, tempo: tempo >= 2 and all(net.hotkey(n) in states for n in net.miners),
                        seconds=90)
            await net.until_weights(lambda weights: weights.get(net.hotkey("honest"), 0) > 0)
            await wait_epochs(net.chain, net.netuid, 2)
            incentive = await net.incentive()
    sybil = sum(v for name, v in incentive.items() if name.startswith("sybil"))
    print(f"\nincentive: honest {incentive['honest']}, three Sybil hotkeys together {sybil} "
          f"({sybil / max(incentive['honest'], 1):.2f}x the honest hotkey)")
    assert incentive["honest"] > 0
    assert sybil <= 1.05 * incentive["honest"]
