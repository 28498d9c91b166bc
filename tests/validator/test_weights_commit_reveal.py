"""The validator's weight setter: plain set_weights, and commit-reveal when the subnet has it on."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from bittensor_wallet import Keypair

from veilnet.chain import errors as ce
from veilnet.chain.types import RAO_PER_TAO
from veilnet.devnet.chain import DevnetChain
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.scoring import ScoreState
from veilnet.settings import ValidatorSettings
from veilnet.store.scores import ScoreStore
from veilnet.store.validator_pipeline import ValidatorPipeline
from veilnet.validator.service import ValidatorContext, reveal_due, set_weights_for

OWNER_C, OWNER_H = Keypair.create_from_uri("//CrOwnerCold"), Keypair.create_from_uri("//CrOwnerHot")
VAL_C, VAL_H = Keypair.create_from_uri("//CrValCold"), Keypair.create_from_uri("//CrValHot")
MINER_C, MINER_H = Keypair.create_from_uri("//CrMinerCold"), Keypair.create_from_uri("//CrMinerHot")


class TimelockRecordingDevnet(DevnetChain):
    """The devnet plus a recorder standing in for drand timelock commits (which the devnet cannot reveal)."""

    timelocked_commits = True

    def __init__(self) -> None:
        super().__init__(None, block_time=None)
        self.timelocked: list[tuple[int, list[int], list[int], int]] = []

    async def commit_timelocked_weights(
        self, netuid: int, hotkey: Keypair, uids: Sequence[int], weights: Sequence[int], version_key: int
    ) -> int:
        self.timelocked.append((netuid, list(uids), list(weights), version_key))
        return 1_000


async def _validator_with_commit_reveal(
    chain: DevnetChain, tmp_path: Path, http: aiohttp.ClientSession, redis_client: aioredis.Redis,
    settings: ValidatorSettings,
) -> tuple[ValidatorContext, int, int]:
    for cold in (OWNER_C, VAL_C, MINER_C):
            await chain.fund(cold.ss58_address, 1_000 * RAO_PER_TAO)
    netuid = await chain.register_subnet(OWNER_C, OWNER_H.ss58_address)
    for name, value in (("tempo", 5), ("weights_rate_limit", 0), ("max_regs_per_block", 5),
                        ("commit_reveal_weights_enabled", True)):
        await chain.sudo_set_hyperparameter(netuid, name, value)
    await chain.burned_register(netuid, VAL_C, VAL_H.ss58_address)
    miner_uid = await chain.burned_register(netuid, MINER_C, MINER_H.ss58_address)
    await chain.add_stake(netuid, VAL_C, VAL_H.ss58_address, 100 * RAO_PER_TAO)
    while not chain.state.subnets[netuid].neurons[1].validator_permit:
        await chain.produce_block()
    ctx = ValidatorContext(
        keypair=VAL_H, chain=chain, netuid=netuid,
        reference=LlamaCppEngine(["SmolLM2-135M-Instruct"], cache_dir=tmp_path),  # not loaded: unused here
        http=http, scores=ScoreStore(redis_client, VAL_H.ss58_address, netuid), settings=settings,
        pipeline=ValidatorPipeline(redis_client, VAL_H.ss58_address, netuid), rng=random.Random(5),
    )
    return ctx, netuid, miner_uid


async def test_commit_then_reveal_in_the_reveal_epoch(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with DevnetChain(None, block_time=None) as chain, aiohttp.ClientSession() as http:
        ctx, netuid, miner_uid = await _validator_with_commit_reveal(chain, tmp_path, http, redis_client,
                                                                     ValidatorSettings())
        states = {MINER_H.ss58_address: ScoreState(ema=0.5, seen=True)}
        uids, values = await set_weights_for(ctx, await chain.get_metagraph(netuid), states, tempo=1)
        assert uids == [miner_uid] and values == [65535]
        assert chain.state.subnets[netuid].neurons[1].weights == []  # committed, not visible
        assert await reveal_due(ctx) == 0 and len(ctx.pending_reveals) == 1  # too early
        for _ in range(12):
            await chain.produce_block()
            if await reveal_due(ctx):
                break
        assert ctx.pending_reveals == []
        assert chain.state.subnets[netuid].neurons[1].weights == [(miner_uid, 65535)]


async def test_timelocked_commit_where_the_chain_supports_it(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with TimelockRecordingDevnet() as chain, aiohttp.ClientSession() as http:
        ctx, netuid, miner_uid = await _validator_with_commit_reveal(chain, tmp_path, http, redis_client,
                                                                     ValidatorSettings())
        states = {MINER_H.ss58_address: ScoreState(ema=0.5, seen=True)}
        await set_weights_for(ctx, await chain.get_metagraph(netuid), states, tempo=1)
        assert chain.timelocked == [(netuid, [miner_uid], [65535], 0)]
        assert ctx.pending_reveals == []  # the chain reveals timelocked commits itself

        ctx.settings = ValidatorSettings(commit_reveal="hash")
        await set_weights_for(ctx, await chain.get_metagraph(netuid), states, tempo=2)
        assert len(chain.timelocked) == 1 and len(ctx.pending_reveals) == 1


async def test_timelocked_mode_on_the_devnet_fails_closed(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with DevnetChain(None, block_time=None) as chain, aiohttp.ClientSession() as http:
        ctx, netuid, _ = await _validator_with_commit_reveal(chain, tmp_path, http, redis_client,
                                                             ValidatorSettings(commit_reveal="timelocked"))
        states = {MINER_H.ss58_address: ScoreState(ema=0.5, seen=True)}
        with pytest.raises(ce.TimelockUnsupported, match="hash commit-reveal"):
            await set_weights_for(ctx, await chain.get_metagraph(netuid), states, tempo=1)
        assert ctx.pending_reveals == []


async def test_a_reveal_blocked_by_the_rate_limit_waits_for_a_later_block(tmp_path: Path,
                                                                         redis_client: aioredis.Redis) -> None:
    """Two commits due in the same block under a weights rate limit: the second reveal is refused as too fast;
    it stays pending (the weights loop must not die) and goes in once the limit has passed."""
    async with DevnetChain(None, block_time=None) as chain, aiohttp.ClientSession() as http:
        ctx, netuid, miner_uid = await _validator_with_commit_reveal(chain, tmp_path, http, redis_client,
                                                                     ValidatorSettings())
        await chain.sudo_set_hyperparameter(netuid, "weights_rate_limit", 2)
        graph = await chain.get_metagraph(netuid)
        await set_weights_for(ctx, graph, {MINER_H.ss58_address: ScoreState(ema=0.5, seen=True)}, tempo=1)
        for _ in range(3):
            await chain.produce_block()
        await set_weights_for(ctx, graph, {MINER_H.ss58_address: ScoreState(ema=0.2, seen=True)}, tempo=2)
        revealed = 0
        for _ in range(40):
            await chain.produce_block()
            revealed += await reveal_due(ctx)
            if not ctx.pending_reveals:
                break
        assert revealed == 2 and ctx.pending_reveals == []
        assert chain.state.subnets[netuid].neurons[1].weights == [(miner_uid, 65535)]
