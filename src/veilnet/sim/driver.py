"""The multi-epoch driver: validators with strategies and a market of miners on one simulated subnet.

Timeline, in blocks, for tempo ``t`` (blocks ``t * tempo + 1 .. (t + 1) * tempo``):

1. at its first block the miners arriving in tempo ``t`` register;
2. from tempo 1 on, at ``t * tempo + offset`` each validator acts, in offset order: it reveals its due
   commits, then (having measured tempo ``t - 1``) commits new weights, or sets them when commit-reveal is
   off. Whatever it reveals is public from then on;
3. the epoch at block ``(t + 1) * tempo`` runs on the weights in force: that is result row ``t``.

Validators are registered and staked at the subnet's creation (block 0) and earn their permits at the first
epoch. Everything is deterministic for a given seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from veilnet.errors import ConfigError
from veilnet.sim.chain import SubnetModel, SubnetParams
from veilnet.sim.market import MarketTrajectory
from veilnet.sim.validators import Strategy, ValidatorView

__all__ = ["SimResult", "ValidatorSpec", "simulate"]


@dataclass(frozen=True)
class ValidatorSpec:
    name: str
    stake: int  # rao, staked at creation
    strategy: Strategy
    offset: int = 2  # the block of each tempo at which it acts (>= 2: registrations take block 1)


@dataclass(frozen=True)
class SimResult:
    """Per-epoch results by uid (uids registered later are 0 before they exist). ``stake`` is each uid's
    stake when the epoch ran (before that epoch's emission is credited)."""

    params: SubnetParams
    validator_uids: dict[str, int]
    miner_uids: NDArray[np.int64]  # uid of each market miner
    market: MarketTrajectory
    incentive: NDArray[np.int64]  # (epochs, n) u16
    dividends: NDArray[np.int64]  # (epochs, n) u16
    server_emission: NDArray[np.int64]  # (epochs, n) rao
    validator_emission: NDArray[np.int64]  # (epochs, n) rao
    stake: NDArray[np.int64]  # (epochs, n) rao

    @property
    def epochs(self) -> int:
        return int(self.incentive.shape[0])


def _pad(rows: list[list[int]], n: int) -> NDArray[np.int64]:
    return np.array([row + [0] * (n - len(row)) for row in rows], dtype=np.int64)


def simulate(
    params: SubnetParams, validators: Sequence[ValidatorSpec], market: MarketTrajectory, *, seed: int = 0
) -> SimResult:
    """Run ``market.tempos`` epochs. Strategies are used as given (they may keep state: pass fresh ones)."""
    if len({v.name for v in validators}) != len(validators):
        raise ConfigError("validator names must be unique")
    if any(not 2 <= v.offset < params.tempo for v in validators):
        raise ConfigError(f"validator offsets must be 2..{params.tempo - 1} (the tempo is {params.tempo})")
    rng = np.random.default_rng(seed)
    subnet = SubnetModel(params)
    validator_uids = {}
    for spec in validators:
        uid = subnet.register()
        subnet.add_stake(uid, spec.stake)
        validator_uids[spec.name] = uid
    miner_uids = np.full(market.miners, -1, dtype=np.int64)
    acting = sorted(validators, key=lambda v: v.offset)
    everyone = tuple(validator_uids.values())
    columns: dict[str, list[list[int]]] = {k: [] for k in ("incentive", "dividends", "server", "validator", "stake")}
    for tempo in range(market.tempos):
        start = tempo * params.tempo
        subnet.advance_to(start + 1)
        for miner in np.flatnonzero((market.arrival == tempo) & (miner_uids < 0)).tolist():
            miner_uids[miner] = subnet.register()
        if tempo >= 1:
            measured = {
                int(miner_uids[i]): float(market.performance[tempo - 1, i])
                for i in range(market.miners) if miner_uids[i] >= 0
            }
            for spec in acting:
                subnet.advance_to(start + spec.offset)
                _act(subnet, spec, ValidatorView(tempo - 1, validator_uids[spec.name], measured, subnet, everyone, rng))
        stake = subnet.stakes()
        (out,) = subnet.advance_to(start + params.tempo)
        columns["incentive"].append(out.incentive)
        columns["dividends"].append(out.dividends)
        columns["server"].append(out.server_emission)
        columns["validator"].append(out.validator_emission)
        columns["stake"].append(stake)
    n = subnet.n
    return SimResult(
        params=params, validator_uids=validator_uids, miner_uids=miner_uids, market=market,
        incentive=_pad(columns["incentive"], n), dividends=_pad(columns["dividends"], n),
        server_emission=_pad(columns["server"], n), validator_emission=_pad(columns["validator"], n),
        stake=_pad(columns["stake"], n),
    )


def _act(subnet: SubnetModel, spec: ValidatorSpec, view: ValidatorView) -> None:
    if subnet.params.commit_reveal:
        subnet.reveal_due(view.uid)
    row = spec.strategy.weights(view)
    if row is None:
        return
    if subnet.params.commit_reveal:
        subnet.commit(view.uid, row)
    else:
        subnet.set_weights(view.uid, row)
