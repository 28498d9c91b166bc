"""The simulator's chain model gives the devnet chain's own epochs: a recorded scenario (honest validators and a
copier committing and revealing, miners registering mid-run) replayed end to end on a real ``DevnetChain`` with
hash commits and reveals yields, epoch by epoch, the same incentive, dividends, stake and bonds."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from bittensor_wallet import Keypair

from veilnet.chain import errors as ce
from veilnet.chain.epoch import SparseRow
from veilnet.chain.types import RAO_PER_TAO
from veilnet.chain.weights import commit_hash
from veilnet.devnet.chain import DevnetChain
from veilnet.sim.chain import SubnetParams
from veilnet.sim.driver import SimResult, ValidatorSpec, simulate
from veilnet.sim.market import DriftingMarket, MarketTrajectory
from veilnet.sim.validators import CopierValidator, HonestValidator, Strategy, ValidatorView


@dataclass
class Recorder:
    """Wraps a strategy and records what it committed, by tempo."""

    inner: Strategy
    rows: dict[int, SparseRow] = field(default_factory=dict)

    def weights(self, view: ValidatorView) -> SparseRow | None:
        row = self.inner.weights(view)
        if row is not None:
            self.rows[view.tempo + 1] = list(row)  # acting in tempo t on the measurements of tempo t - 1
        return row


def _keys(name: str) -> tuple[Keypair, Keypair]:
    return Keypair.create_from_uri(f"//Sim{name}Cold"), Keypair.create_from_uri(f"//Sim{name}Hot")


async def _replay(params: SubnetParams, specs: list[ValidatorSpec], market: MarketTrajectory, result: SimResult) -> None:
    async with DevnetChain(None, block_time=None) as chain:
        owner_c, owner_h = _keys("Owner")
        validators = {spec.name: _keys(spec.name) for spec in specs}
        miners = [_keys(f"Miner{i}") for i in range(market.miners)]
        for cold, _ in [(owner_c, owner_h), *validators.values(), *miners]:
            await chain.fund(cold.ss58_address, 10_000 * RAO_PER_TAO)
        netuid = await chain.register_subnet(owner_c, owner_h.ss58_address)
        assert netuid == params.netuid and chain.state.block == 0
        for name, value in (("tempo", params.tempo), ("weights_rate_limit", params.weights_rate_limit),
                            ("commit_reveal_weights_enabled", params.commit_reveal),
                            ("commit_reveal_period", params.reveal_period), ("liquid_alpha_enabled", params.liquid_alpha),
                            ("bonds_moving_avg", params.bonds_moving_average),
                            ("max_regs_per_block", 64), ("target_regs_per_interval", 64)):
            await chain.sudo_set_hyperparameter(netuid, name, value)
        for spec in specs:
            cold, hot = validators[spec.name]
            assert await chain.burned_register(netuid, cold, hot.ss58_address) == result.validator_uids[spec.name]
            await chain.add_stake(netuid, cold, hot.ss58_address, spec.stake)
        pending: dict[str, list[tuple[SparseRow, list[int]]]] = {spec.name: [] for spec in specs}

        async def advance_to(block: int) -> None:
            while chain.state.block < block:
                await chain.produce_block()

        for tempo in range(market.tempos):
            start = tempo * params.tempo
            await advance_to(start + 1)
            for miner in np.flatnonzero(market.arrival == tempo).tolist():
                cold, hot = miners[miner]
                assert await chain.burned_register(netuid, cold, hot.ss58_address) == result.miner_uids[miner]
            for spec in sorted(specs, key=lambda s: s.offset):
                await advance_to(start + spec.offset)
                _, hot = validators[spec.name]
                for row, salt in list(pending[spec.name]):  # as the validator's reveal_due does
                    try:
                        await chain.reveal_weights(netuid, hot, [u for u, _ in row], [w for _, w in row], salt, 0)
                    except ce.RevealTooEarly:
                        continue
                    except ce.ExpiredWeightCommit:
                        pass
                    pending[spec.name].remove((row, salt))
                assert isinstance(spec.strategy, Recorder)
                row = spec.strategy.rows.get(tempo)
                if row is not None:
                    salt = [tempo, spec.offset]
                    digest = commit_hash(bytes(hot.public_key), netuid, [u for u, _ in row], [w for _, w in row], salt, 0)
                    await chain.commit_weights(netuid, hot, digest)
                    pending[spec.name].append((row, salt))
            await advance_to(start + params.tempo - 1)
            stake_before = [n.stake for n in (await chain.get_metagraph(netuid)).neurons]
            await advance_to(start + params.tempo)
            graph = await chain.get_metagraph(netuid)
            n = len(graph.neurons)
            assert stake_before == result.stake[tempo, :n].tolist(), f"stake before epoch {tempo}"
            assert [x.incentive for x in graph.neurons] == result.incentive[tempo, :n].tolist(), f"epoch {tempo}"
            assert [x.dividends for x in graph.neurons] == result.dividends[tempo, :n].tolist(), f"epoch {tempo}"
            credited = [after.stake - before for after, before in zip(graph.neurons, stake_before, strict=True)]
            paid = (result.server_emission[tempo, :n] + result.validator_emission[tempo, :n]).tolist()
            assert credited[1:] == paid[1:], f"emission of epoch {tempo}"  # uid 0 also gets the owner's cut


@pytest.mark.parametrize(("reveal_period", "liquid_alpha"), [(1, False), (2, True)])
async def test_driver_reproduces_the_devnet_chain_epoch_by_epoch(reveal_period: int, liquid_alpha: bool) -> None:
    params = SubnetParams(tempo=12, weights_rate_limit=0, reveal_period=reveal_period, liquid_alpha=liquid_alpha,
                          bonds_moving_average=700_000)
    market = DriftingMarket(miners=5, initial=3, drift=0.3, outage_rate=0.2)(9, np.random.default_rng(11))
    assert market.arrival.max() > 0  # miners register mid-run: the commit mask matters
    specs = [
        ValidatorSpec("honest-a", 300 * RAO_PER_TAO, Recorder(HonestValidator(noise=0.2, ema_alpha=0.8)), offset=2),
        ValidatorSpec("honest-b", 200 * RAO_PER_TAO, Recorder(HonestValidator(noise=0.2, ema_alpha=0.8)), offset=5),
        ValidatorSpec("copier", 100 * RAO_PER_TAO, Recorder(CopierValidator()), offset=7),
    ]
    result = simulate(params, specs, market, seed=3)
    assert result.dividends[-1, result.validator_uids["copier"]] > 0 and result.incentive[-1].sum() > 0
    await _replay(params, specs, market, result)
