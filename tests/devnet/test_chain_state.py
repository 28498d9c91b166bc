"""The devnet chain's rules, through the in-process DevnetChain (manual blocks, real SQLite)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bittensor_wallet import Keypair

from veilnet.chain import errors as ce
from veilnet.chain.interface import Chain
from veilnet.chain.types import RAO_PER_TAO
from veilnet.chain.weights import commit_hash
from veilnet.devnet.chain import DevnetChain
from veilnet.devnet.chain.state import state_digest

OWNER_C, OWNER_H = Keypair.create_from_uri("//OwnerCold"), Keypair.create_from_uri("//OwnerHot")
VAL_C, VAL_H = Keypair.create_from_uri("//ValCold"), Keypair.create_from_uri("//ValHot")
MINERS = [(Keypair.create_from_uri(f"//MinerCold{i}"), Keypair.create_from_uri(f"//MinerHot{i}")) for i in range(3)]


async def _subnet(chain: DevnetChain, **hyper: int | bool) -> int:
    for cold in [OWNER_C, VAL_C, *(c for c, _ in MINERS)]:
        await chain.fund(cold.ss58_address, 10_000 * RAO_PER_TAO)
    netuid = await chain.register_subnet(OWNER_C, OWNER_H.ss58_address)
    await chain.sudo_set_hyperparameter(netuid, "max_regs_per_block", 10)
    await chain.sudo_set_hyperparameter(netuid, "target_regs_per_interval", 10)
    hyper = {"commit_reveal_weights_enabled": False, **hyper}  # plain set_weights unless a test turns it on
    for name, value in hyper.items():
        await chain.sudo_set_hyperparameter(netuid, name, value)
    return netuid


async def test_devnet_chain_is_a_chain() -> None:
    async with DevnetChain(None, block_time=None) as chain:
        assert isinstance(chain, Chain)


async def test_register_stake_serve_weights_and_incentive(tmp_path: Path) -> None:
    async with DevnetChain(tmp_path / "chain.sqlite3", block_time=None) as chain:
        netuid = await _subnet(chain, tempo=10, weights_rate_limit=0)
        hyper = await chain.get_hyperparameters(netuid)
        assert (hyper.kappa, hyper.max_allowed_validators, hyper.immunity_period, hyper.yuma3_enabled) == (
            32767, 64, 5000, True,
        )
        assert await chain.burned_register(netuid, VAL_C, VAL_H.ss58_address) == 1
        uids = [await chain.burned_register(netuid, c, h.ss58_address) for c, h in MINERS]
        assert uids == [2, 3, 4]
        await chain.add_stake(netuid, VAL_C, VAL_H.ss58_address, 1_000 * RAO_PER_TAO)
        for _, hot in MINERS:
            await chain.serve_axon(netuid, hot, ip="127.0.0.1", port=9000 + uids[0])
        # permits are given at an epoch
        while (await chain.get_metagraph(netuid)).by_hotkey(VAL_H.ss58_address).validator_permit is False:  # type: ignore[union-attr]
            await chain.produce_block()
        await chain.produce_block()
        await chain.set_weights(netuid, VAL_H, [2, 3, 4], [65535, 32768, 0], 0)
        target = await chain.get_next_epoch_block(netuid)
        while await chain.get_current_block() < target:
            await chain.produce_block()
        graph = await chain.get_metagraph(netuid)
        miners = [graph.neurons[u] for u in uids]
        assert miners[0].incentive > miners[1].incentive > 0
        assert miners[2].incentive == 0
        assert graph.neurons[1].dividends > 0
        assert miners[0].emission > 0 and miners[0].axon is not None and miners[0].axon.port == 9002
        block = await chain.get_current_block()
    # restart: same block, same state
    async with DevnetChain(tmp_path / "chain.sqlite3", block_time=None) as chain:
        assert await chain.get_current_block() == block
        assert (await chain.get_metagraph(netuid)).neurons[2].incentive == miners[0].incentive


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c, n: c.burned_register(99, VAL_C, VAL_H.ss58_address), ce.SubnetNotExists),
        (lambda c, n: c.burned_register(n, VAL_C, OWNER_H.ss58_address), ce.HotKeyAlreadyRegisteredInSubNet),
        (lambda c, n: c.burned_register(n, Keypair.create_from_uri("//Poor"), "5" + "x" * 47), ce.NotEnoughBalance),
        (lambda c, n: c.add_stake(n, VAL_C, MINERS[0][1].ss58_address, RAO_PER_TAO), ce.NotRegistered),
        (lambda c, n: c.add_stake(n, VAL_C, VAL_H.ss58_address, 10**30), ce.NotEnoughBalance),
        (lambda c, n: c.add_stake(n, VAL_C, VAL_H.ss58_address, 1), ce.AmountTooLow),
        (lambda c, n: c.remove_stake(n, VAL_C, VAL_H.ss58_address, 10**30), ce.NotEnoughStakeToWithdraw),
        (lambda c, n: c.serve_axon(n, VAL_H, ip="not-an-ip", port=1), ce.InvalidIpAddress),
        (lambda c, n: c.serve_axon(n, VAL_H, ip="127.0.0.1", port=0), ce.InvalidPort),
        (lambda c, n: c.set_weights(n, VAL_H, [0, 1], [1], 0), ce.WeightVecNotEqualSize),
        (lambda c, n: c.set_weights(n, MINERS[0][1], [0], [1], 0), ce.NotRegistered),
        (lambda c, n: c.set_weights(n, VAL_H, [1], [65535], 0), ce.SettingWeightsTooFast),
        (lambda c, n: c.commit_weights(n, VAL_H, b"\0" * 32), ce.CommitRevealDisabled),
    ],
)
async def test_failed_calls_raise_typed_errors_and_change_nothing(call, error) -> None:  # type: ignore[no-untyped-def]
    async with DevnetChain(None, block_time=None) as chain:
        netuid = await _subnet(chain, weights_rate_limit=100)
        await chain.produce_block()  # registered at block 1: the rate limit counts from there
        await chain.burned_register(netuid, VAL_C, VAL_H.ss58_address)
        before = state_digest(chain.state)
        with pytest.raises(error):
            await call(chain, netuid)
        assert state_digest(chain.state) == before


async def test_weights_need_a_permit_except_self_weight() -> None:
    async with DevnetChain(None, block_time=None) as chain:
        netuid = await _subnet(chain, weights_rate_limit=0)
        await chain.burned_register(netuid, VAL_C, VAL_H.ss58_address)
        before = state_digest(chain.state)
        with pytest.raises(ce.NoValidatorPermit):
            await chain.set_weights(netuid, VAL_H, [0], [65535], 0)
        assert state_digest(chain.state) == before
        await chain.set_weights(netuid, VAL_H, [1], [65535], 0)  # a self-weight needs no permit


async def test_set_weights_checks_version_duplicates_and_unknown_uids() -> None:
    async with DevnetChain(None, block_time=None) as chain:
        netuid = await _subnet(chain, tempo=2, weights_rate_limit=0, weights_version=5)
        await chain.burned_register(netuid, VAL_C, VAL_H.ss58_address)
        await chain.add_stake(netuid, VAL_C, VAL_H.ss58_address, 100 * RAO_PER_TAO)
        for _ in range(3):
            await chain.produce_block()
        with pytest.raises(ce.IncorrectWeightVersionKey):
            await chain.set_weights(netuid, VAL_H, [0], [1], 4)
        with pytest.raises(ce.DuplicateUids):
            await chain.set_weights(netuid, VAL_H, [0, 0], [1, 2], 5)
        with pytest.raises(ce.UidVecContainInvalidOne):
            await chain.set_weights(netuid, VAL_H, [0, 7], [1, 2], 5)
        await chain.set_weights(netuid, VAL_H, [0], [3], 5)
        assert chain.state.subnets[netuid].neurons[1].weights == [(0, 65535)]  # max-upscaled


async def test_commit_reveal_v2() -> None:
    async with DevnetChain(None, block_time=None) as chain:
        netuid = await _subnet(chain, tempo=5, weights_rate_limit=0, commit_reveal_weights_enabled=True,
                               commit_reveal_period=1)
        await chain.burned_register(netuid, VAL_C, VAL_H.ss58_address)
        await chain.add_stake(netuid, VAL_C, VAL_H.ss58_address, 100 * RAO_PER_TAO)
        while not chain.state.subnets[netuid].neurons[1].validator_permit:
            await chain.produce_block()
        with pytest.raises(ce.CommitRevealEnabled):
            await chain.set_weights(netuid, VAL_H, [0], [1], 0)
        uids, values, salt = [0], [65535], [1, 2, 3]
        digest = commit_hash(bytes(VAL_H.public_key), netuid, uids, values, salt, 0)
        await chain.commit_weights(netuid, VAL_H, digest)
        with pytest.raises(ce.RevealTooEarly):
            await chain.reveal_weights(netuid, VAL_H, uids, values, salt, 0)
        subnet = chain.state.subnets[netuid]
        commit_epoch = subnet.epoch_index(chain.state.block)
        while subnet.epoch_index(chain.state.block) < commit_epoch + 1:
            await chain.produce_block()
            subnet = chain.state.subnets[netuid]
        with pytest.raises(ce.InvalidRevealCommitHashNotMatch):
            await chain.reveal_weights(netuid, VAL_H, uids, values, [9], 0)
        await chain.reveal_weights(netuid, VAL_H, uids, values, salt, 0)
        assert chain.state.subnets[netuid].neurons[1].weights == [(0, 65535)]
        with pytest.raises(ce.NoWeightsCommitFound):
            await chain.reveal_weights(netuid, VAL_H, uids, values, salt, 0)


async def test_full_subnet_prunes_lowest_emission_non_immune_uid() -> None:
    async with DevnetChain(None, block_time=None) as chain:
        netuid = await _subnet(chain, max_allowed_uids=3, immunity_period=2)
        await chain.burned_register(netuid, MINERS[0][0], MINERS[0][1].ss58_address)
        await chain.produce_block()
        await chain.burned_register(netuid, MINERS[1][0], MINERS[1][1].ss58_address)
        for _ in range(3):
            await chain.produce_block()
        uid = await chain.burned_register(netuid, MINERS[2][0], MINERS[2][1].ss58_address)
        graph = await chain.get_metagraph(netuid)
        # equal (zero) emission: the earliest registered non-owner goes; the owner's uid 0 is never pruned
        assert uid == 1 and graph.neurons[1].hotkey == MINERS[2][1].ss58_address
        assert graph.neurons[0].hotkey == OWNER_H.ss58_address


async def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "chain.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ce.ChainStateCorrupt, match=r"chain\.sqlite3"):
        async with DevnetChain(path, block_time=None):
            pass
