"""End to end on the devnet chain: three real miners, one cheating (Gemma answering as SmolLM2).

After the validator's weights go through two epochs, the honest miners hold the miner incentive on chain and
the cheater's weight is 0; a validator restarted mid-tempo carries its scores on and keeps setting weights.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from bittensor_wallet import Keypair
from starlette.types import ASGIApp
from tests.validator.subnet import SMOL, MinerSpec, Subnet, devnet_subnet, wait_epochs

from veilnet.models.engine import ModelInfo
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.store.history import ScoreHistory
from veilnet.store.scores import ScoreStore
from veilnet.store.sql import open_database
from veilnet.validator import run_challenger, run_scorer, run_validator, run_weights

# the keys devnet_subnet(prefix="E2E") derives
VAL_H = Keypair.create_from_uri("//E2EValHot")
MINERS = {name: (Keypair.create_from_uri(f"//E2E{name}Cold"), Keypair.create_from_uri(f"//E2E{name}Hot"))
          for name in ("honest1", "honest2", "cheater")}

pytestmark = [pytest.mark.model, pytest.mark.slow]


class DisguisedEngine:
    """The cheater: answers with Gemma 3 270M while claiming to serve SmolLM2."""

    def __init__(self, inner: LlamaCppEngine) -> None:
        self.inner = inner

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(SMOL, 4096)]

    async def chat(self, request: dict[str, Any]) -> dict[str, Any]:
        answer = await self.inner.chat({**request, "model": "gemma-3-270m"})
        answer["model"] = SMOL
        return answer

    def chat_stream(self, request: dict[str, Any]) -> Any:
        return self.inner.chat_stream({**request, "model": "gemma-3-270m"})

    async def completion(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self.inner.completion({**request, "model": "gemma-3-270m"})

    def completion_stream(self, request: dict[str, Any]) -> Any:
        return self.inner.completion_stream({**request, "model": "gemma-3-270m"})

    async def embeddings(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self.inner.embeddings(request)


@contextlib.asynccontextmanager
async def subnet(tmp_path: Path, redis: aioredis.Redis, *,
                 cheater: Callable[[LlamaCppEngine], Any] | None = None,
                 cheater_hop: Callable[[ASGIApp], ASGIApp] | None = None,
                 ) -> AsyncIterator[tuple[Subnet, LlamaCppEngine]]:
    """The devnet subnet with honest1, honest2 and the cheater: Gemma answering as SmolLM2 unless ``cheater``
    makes its engine from the honest SmolLM2 one (``cheater_hop``: a wrapper around its miner app)."""
    cache = tmp_path / "models"
    honest = LlamaCppEngine([SMOL], cache_dir=cache, concurrency=2)
    gemma = LlamaCppEngine(["gemma-3-270m"], cache_dir=cache, concurrency=1) if cheater is None else None
    reference = LlamaCppEngine([SMOL], cache_dir=cache, concurrency=1, tokenizer=True)
    for engine in (honest, gemma, reference):
        if engine is not None:
            await asyncio.to_thread(engine.load)
    cheating = DisguisedEngine(gemma) if gemma is not None else cheater(honest)  # type: ignore[misc]
    miners = {"honest1": MinerSpec(honest), "honest2": MinerSpec(honest),
              "cheater": MinerSpec(cheating, hop=cheater_hop)}
    async with devnet_subnet(redis, miners, prefix="E2E", wait_for_permit=False) as net:
        await net.seed_organic()  # challenges take short organic shapes: a 2-core machine keeps up
        yield net, reference


def _validator(net: Subnet, reference: LlamaCppEngine, seed: int, history: ScoreHistory | None = None,
               separate_roles: bool = False) -> asyncio.Task[None]:
    """The validator: one process with every role, or (``separate_roles``) one context per role as separate
    processes would have, sharing only Redis (and the chain)."""
    if not separate_roles:
        return asyncio.create_task(run_validator(net.context(reference=reference, seed=seed, history=history),
                                                 round_interval=0.2))

    async def roles() -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(run_challenger(net.context(seed=seed), round_interval=0.2))
            group.create_task(run_scorer(net.context(reference=reference, seed=seed + 100)))
            group.create_task(run_weights(net.context(seed=seed + 200, history=history), round_interval=0.2))

    return asyncio.create_task(roles())


@pytest.mark.timeout(600)  # a loaded machine verifies slowly; the waits below have their own ceilings
async def test_honest_miners_earn_and_the_cheater_gets_nothing(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with subnet(tmp_path, redis_client) as (net, reference), \
            open_database(f"sqlite+aiosqlite:///{tmp_path / 'history.sqlite3'}") as engine:
        chain, netuid = net.chain, net.netuid
        history = ScoreHistory(engine, VAL_H.ss58_address, netuid)
        validator = _validator(net, reference, seed=1, history=history, separate_roles=True)
        try:
            val_uid = (await chain.get_metagraph(netuid)).uid_of(VAL_H.ss58_address)
            assert val_uid is not None
            # until the first weights are on chain: they need a probe window's answers, which wait behind every
            # challenge answer the scorer verifies (verify_rate 1) and take minutes on a loaded machine
            for _ in range(3000):
                if chain.state.subnets[netuid].neurons[val_uid].weights:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the validator never set weights")
            # Answers arrive slowly on a busy machine and the cheater passes most sampled challenges one by
            # one: wait until the scores say what they must (the cheater banned, both honest miners earning),
            # then until weights made from those scores are revealed on chain, then one epoch on them.
            store = ScoreStore(redis_client, VAL_H.ss58_address, netuid)
            hot = {name: h.ss58_address for name, (_, h) in MINERS.items()}
            for _ in range(3000):
                states, tempo = await store.load()
                cheater = states.get(hot["cheater"])
                if (cheater is not None and cheater.banned_until >= tempo
                        and all(states.get(hot[n]) is not None and states[hot[n]].ema > 0 for n in ("honest1", "honest2"))):
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"the validator never banned the cheater while scoring both honest miners: {states}")
            graph = await chain.get_metagraph(netuid)
            uids = {name: graph.uid_of(address) for name, address in hot.items()}
            for _ in range(3000):
                weights = dict(chain.state.subnets[netuid].neurons[val_uid].weights)
                if weights.get(uids["cheater"], 0) == 0 and weights.get(uids["honest1"], 0) > 0 \
                        and weights.get(uids["honest2"], 0) > 0:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("weights without the cheater never reached the chain")
            await wait_epochs(chain, netuid, 1)
            graph = await chain.get_metagraph(netuid)
            incentive = {name: graph.by_hotkey(address).incentive for name, address in hot.items()}  # type: ignore[union-attr]
            assert incentive["cheater"] == 0
            assert incentive["honest1"] > 0 and incentive["honest2"] > 0
            assert incentive["honest1"] + incentive["honest2"] >= 0.95 * sum(incentive.values())

            points = await history.series()
            assert {p.miner for p in points} >= set(hot.values())
            # each row keeps the chain's view at its epoch (the dashboard plots it)
            assert all(p.uid == graph.uid_of(p.miner) and p.incentive is not None for p in points)

            # restart mid-tempo as one process with every role: the scores survive in Redis and weights
            # keep being set
            validator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await validator
            states, tempo = await ScoreStore(redis_client, VAL_H.ss58_address, netuid).load()
            assert tempo >= 1 and states[MINERS["honest1"][1].ss58_address].ema > 0
            assert states[MINERS["cheater"][1].ss58_address].ema == 0
            last_update = chain.state.subnets[netuid].neurons[val_uid].last_update
            validator = _validator(net, reference, seed=2)
            for _ in range(600):
                if chain.state.subnets[netuid].neurons[val_uid].last_update > last_update:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the restarted validator set no weights")
            _, tempo_after = await ScoreStore(redis_client, VAL_H.ss58_address, netuid).load()
            assert tempo_after > tempo  # it continued counting from the saved tempo
        finally:
            validator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await validator


