"""A subnet the devnet chain creates has commit-reveal on, as Subtensor creates them, with the reveal period
docs/incentives.md ("Weight copying") recommends; plain set_weights is refused there."""

from __future__ import annotations

import pytest
from bittensor_wallet import Keypair

from veilnet.chain import errors as ce
from veilnet.chain.types import RAO_PER_TAO
from veilnet.devnet.chain import DevnetChain

OWNER_C, OWNER_H = Keypair.create_from_uri("//DefaultsOwnerCold"), Keypair.create_from_uri("//DefaultsOwnerHot")


async def test_new_subnets_have_commit_reveal_on_with_period_two() -> None:
    async with DevnetChain(None, block_time=None) as chain:
        await chain.fund(OWNER_C.ss58_address, 1_000 * RAO_PER_TAO)
        netuid = await chain.register_subnet(OWNER_C, OWNER_H.ss58_address)
        hyper = await chain.get_hyperparameters(netuid)
        assert hyper.commit_reveal_weights_enabled is True
        assert hyper.commit_reveal_period == 2
        with pytest.raises(ce.CommitRevealEnabled):
            await chain.set_weights(netuid, OWNER_H, [0], [65_535], 0)
        await chain.sudo_set_hyperparameter(netuid, "commit_reveal_weights_enabled", False)  # still settable
        await chain.set_weights(netuid, OWNER_H, [0], [65_535], 0)
