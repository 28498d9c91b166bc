"""End to end against cheating miners: the devnet chain, real miners over HTTP (real SmolLM2 where they
generate at all), the real validator (every role), incentive read from the chain's own epoch.

- EMPTY: a miner answering every request with no tokens and ``finish_reason: "stop"`` (it took 55 % of the
  incentive before answers were verified from the answer alone) earns nothing; the honest miner earns it all.
- SYBIL: one operator puts three hotkeys in front of ONE backend next to an honest miner with a backend of
  the same capacity; together the three must earn no more than the honest hotkey (within 5 %; they took 70 % of
  the incentive before throughput was measured). Not shown on this machine (the test's mark says why).
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
from veilnet.settings import MinerSettings, ValidatorSettings
from veilnet.store.scores import ScoreStore
from veilnet.validator import run_validator

pytestmark = [pytest.mark.model, pytest.mark.slow]

RATE = 10.0  # tokens/s each paced backend delivers, shared by the requests in flight
ADVERTISED = MinerSettings(capacity_per_window=100_000, max_concurrency=2)


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


class PacedBackend:
    """A backend of fixed capacity in front of a real SmolLM2 engine: the engine writes the answers (they verify
    like any honest answer), and delivery is paced to ``rate`` completion tokens/s shared by every request in
    flight, one token at a time in turn (asyncio.Lock is first come, first served), as a saturated inference
    server shares itself. The pace, not this 2-core machine's CPU (which the other backend and the validator's
    reference compete for), sets what the backend serves, so hotkeys in front of one are measured against a
    known capacity."""

    def __init__(self, engine: LlamaCppEngine, rate: float) -> None:
        self._engine = engine
        self._gap = 1 / rate
        self._turn = asyncio.Lock()

    def models(self) -> list[ModelInfo]:
        return self._engine.models()

    async def _pace(self, tokens: int) -> None:
        for _ in range(tokens):
            async with self._turn:
                await asyncio.sleep(self._gap)

    async def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = await self._engine.chat(request)
        await self._pace(int(answer.get("usage", {}).get("completion_tokens", 0)))
        return answer

    async def chat_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async for chunk in self._engine.chat_stream(request):
            if any(choice.get("delta", {}).get("content") for choice in chunk.get("choices") or ()):
                await self._pace(1)
            yield chunk

    async def completion(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self._engine.completion(request)

    def completion_stream(self, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        return self._engine.completion_stream(request)

    async def embeddings(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self._engine.embeddings(request)


@contextlib.asynccontextmanager
async def engines(tmp_path: Path, backends: int, *, concurrency: int = 2,
                  ) -> AsyncIterator[tuple[list[LlamaCppEngine], LlamaCppEngine]]:
    """``backends`` SmolLM2 serving engines (``concurrency`` requests at a time each) and the validator's
    reference."""
    cache = tmp_path / "models"
    async with contextlib.AsyncExitStack() as stack:
        serving = [await stack.enter_async_context(LlamaCppEngine([SMOL], cache_dir=cache, concurrency=concurrency,
                                                                  threads=1))
                   for _ in range(backends)]
        reference = await stack.enter_async_context(
            LlamaCppEngine([SMOL], cache_dir=cache, concurrency=1, tokenizer=True))
        yield serving, reference


@contextlib.asynccontextmanager
async def validating(net: Subnet, reference: LlamaCppEngine, **settings: Any) -> AsyncIterator[ScoreStore]:
    """The validator, every role in one process, while the block runs (``settings``: ValidatorSettings)."""
    chosen = ValidatorSettings(**{"verify_rate": 1.0, "reference_models": [SMOL], "challenges_per_window": 40,
                                  "probe_max_tokens": 32, "probe_concurrency": 2, "probe_window": 4.0, **settings})
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


@pytest.mark.timeout(300)
@pytest.mark.xfail(reason="not shown on this 2-core machine within a test's few tempos: the pay on chain still "
                          "carries the first probe rounds (commit-reveal lag, score EMA) and one 4 s window at 10 "
                          "tokens/s measures each backend within about 35 %; in 6 runs the three hotkeys took "
                          "0.21-1.82x the honest hotkey's incentive (0.25-4.5x in 17 with unpaced backends). The window "
                          "measurement itself is shown exactly over real HTTP (tests/validator/test_validator_probe.py)",
                   run=False)
async def test_three_hotkeys_on_one_backend_earn_no_more_than_one(tmp_path: Path,
                                                                  redis_client: aioredis.Redis) -> None:
    """An honest hotkey with a backend of its own and three hotkeys in front of ONE backend of the same
    capacity (:class:`PacedBackend`, 10 tokens/s, each over a real SmolLM2 engine of its own, which writes more
    than that even with the machine shared); every hotkey advertises two concurrent requests. Probe windows read what each backend delivers, so the three together earn no more than
    the honest hotkey (within 5 %)."""
    async with engines(tmp_path, 2) as ([own, behind], reference), devnet_subnet(
            redis_client, {"honest": MinerSpec(PacedBackend(own, RATE), settings=ADVERTISED),
                           **{f"sybil{i}": MinerSpec(shared, settings=ADVERTISED)
                              for shared in [PacedBackend(behind, RATE)] for i in range(3)}},
            prefix="Sybil") as net:
        await net.seed_organic()
        # fewer challenges, half of them verified, so the machine keeps up; a probe round every ~10 s, so the pay
        # follows several measurements
        async with validating(net, reference, challenges_per_window=10, verify_rate=0.5, probe_interval=10.0,
                              probe_window=4.0) as store:
            await until(store, "the validator never measured every hotkey over three tempos",
                        lambda states, tempo: tempo >= 3 and all(net.hotkey(n) in states for n in net.miners),
                        seconds=150)
            await net.until_weights(lambda weights: weights.get(net.hotkey("honest"), 0) > 0)
            await wait_epochs(net.chain, net.netuid, 2)
            incentive = await net.incentive()
            states, _ = await store.load()
    sybil = sum(v for name, v in incentive.items() if name.startswith("sybil"))
    print(f"\nincentive: honest {incentive['honest']}, three Sybil hotkeys together {sybil} "
          f"({sybil / max(incentive['honest'], 1):.2f}x the honest hotkey); measured tokens/s: "
          + ", ".join(f"{name} {states[net.hotkey(name)].throughput.get('chat', 0.0):.1f}" for name in net.miners))
    assert incentive["honest"] > 0
    assert sybil <= 1.05 * incentive["honest"]
