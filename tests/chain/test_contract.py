"""One scenario, every backend: register, serve, set weights, read the metagraph.

Runs against the devnet chain always, and against a real Subtensor node when VEILNET_SUBTENSOR_URL is set
(e.g. ws://127.0.0.1:9944 for the localnet image in fast-blocks mode; see docs/chain.md). On a real node the
coldkey comes from VEILNET_SUBTENSOR_COLDKEY_URI (default //Alice, funded on localnet).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bittensor_wallet import Keypair

from veilnet.chain import errors as ce
from veilnet.chain.interface import Chain
from veilnet.chain.types import RAO_PER_TAO
from veilnet.chain.weights import scores_to_u16_weights
from veilnet.devnet.chain import DevnetChain

BACKENDS = ["devnet"] + (["subtensor"] if os.environ.get("VEILNET_SUBTENSOR_URL") else [])


@dataclass
class Setup:
    chain: Chain
    coldkey: Keypair
    devnet: DevnetChain | None = None

    async def shorten_tempo(self, netuid: int) -> None:
        """Devnet: a 5-block tempo so permits come quickly (a real node keeps its own, e.g. fast-blocks), no
        weights rate limit (registration may land after block 0, from which the limit counts), and plain
        set_weights (the devnet has hash commit-reveal only, on by default; the validator tests cover it)."""
        if self.devnet is not None:
            for name, value in (("tempo", 5), ("weights_rate_limit", 0), ("commit_reveal_weights_enabled", False)):
                await self.devnet.sudo_set_hyperparameter(netuid, name, value)


def _fresh() -> Keypair:
    return Keypair.create_from_mnemonic(Keypair.generate_mnemonic())


@pytest.fixture(params=BACKENDS)
async def setup(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Setup]:
    if request.param == "devnet":
        async with DevnetChain(tmp_path / "chain.sqlite3", block_time=0.05) as devnet:
            coldkey = _fresh()
            await devnet.fund(coldkey.ss58_address, 10_000 * RAO_PER_TAO)
            yield Setup(devnet, coldkey, devnet)
        return
    from veilnet.chain.subtensor import SubtensorChain

    url = os.environ["VEILNET_SUBTENSOR_URL"]
    coldkey = Keypair.create_from_uri(os.environ.get("VEILNET_SUBTENSOR_COLDKEY_URI", "//Alice"))
    async with SubtensorChain(url, block_time=float(os.environ.get("VEILNET_SUBTENSOR_BLOCK_TIME", "0.25"))) as node:
        yield Setup(node, coldkey)


async def test_register_serve_set_weights_read_metagraph(setup: Setup) -> None:
    chain, coldkey = setup.chain, setup.coldkey
    owner_hot, validator_hot, miner_hot = _fresh(), _fresh(), _fresh()

    netuid = await chain.register_subnet(coldkey, owner_hot.ss58_address)
    assert await chain.subnet_exists(netuid)
    await setup.shorten_tempo(netuid)
    validator_uid = await chain.burned_register(netuid, coldkey, validator_hot.ss58_address)
    await chain.wait_for_block(timeout=60)  # one registration per block by default
    miner_uid = await chain.burned_register(netuid, coldkey, miner_hot.ss58_address)
    assert validator_uid != miner_uid
    await chain.wait_for_block(timeout=60)
    with pytest.raises(ce.HotKeyAlreadyRegisteredInSubNet):
        await chain.burned_register(netuid, coldkey, miner_hot.ss58_address)

    await chain.add_stake(netuid, coldkey, validator_hot.ss58_address, 100 * RAO_PER_TAO)
    await chain.serve_axon(netuid, miner_hot, ip="203.0.113.7", port=8091)
    axon = await chain.get_axon(netuid, miner_hot.ss58_address)
    assert axon is not None and (axon.ip, axon.port) == ("203.0.113.7", 8091)

    hyper = await chain.get_hyperparameters(netuid)
    assert hyper.netuid == netuid and hyper.tempo > 0
    # validator permits are handed out by the epoch: wait for one to run after the stake
    epoch = await chain.get_next_epoch_block(netuid)
    await chain.wait_for_block(epoch + 1, timeout=hyper.tempo * 2 * 12 + 60)
    assert (await chain.get_metagraph(netuid)).neurons[validator_uid].validator_permit
    uids, weights = scores_to_u16_weights({miner_uid: 1.0})
    before = await chain.get_current_block()
    if not hyper.commit_reveal_weights_enabled:
        await chain.set_weights(netuid, validator_hot, uids, weights, hyper.weights_version)
    elif chain.timelocked_commits:
        with pytest.raises(ce.CommitRevealEnabled):
            await chain.set_weights(netuid, validator_hot, uids, weights, hyper.weights_version)
        assert await chain.commit_timelocked_weights(netuid, validator_hot, uids, weights, hyper.weights_version) > 0
    else:
        pytest.fail("commit-reveal is on but the backend cannot commit: the scenario needs it off")

    graph = await chain.get_metagraph(netuid)
    by_hotkey = {n.hotkey: n for n in graph.neurons}
    assert by_hotkey[validator_hot.ss58_address].uid == validator_uid
    assert by_hotkey[miner_hot.ss58_address].uid == miner_uid
    assert by_hotkey[validator_hot.ss58_address].coldkey == coldkey.ss58_address
    assert by_hotkey[validator_hot.ss58_address].stake > by_hotkey[miner_hot.ss58_address].stake
    served = by_hotkey[miner_hot.ss58_address].axon
    assert served is not None and served.url == "http://203.0.113.7:8091"
    if not hyper.commit_reveal_weights_enabled:
        assert by_hotkey[validator_hot.ss58_address].last_update >= before
    assert await chain.get_next_epoch_block(netuid) >= graph.block - hyper.tempo

    with pytest.raises(ce.SubnetNotExists):
        await chain.get_metagraph(netuid + 1000)
