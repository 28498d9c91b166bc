"""Weight copying on the simulated subnet: what a copier earns per unit stake against honest validators."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from veilnet.chain.epoch import SparseRow
from veilnet.chain.types import RAO_PER_TAO
from veilnet.sim.copying import MARKETS, RECOMMENDED, copying_outcome
from veilnet.sim.driver import ValidatorSpec, simulate
from veilnet.sim.market import DriftingMarket
from veilnet.sim.metrics import dividend_ratio
from veilnet.sim.validators import CopierValidator, HonestValidator, Strategy, ValidatorView


@dataclass
class Recorder:
    inner: Strategy
    rows: dict[int, SparseRow] = field(default_factory=dict)

    def weights(self, view: ValidatorView) -> SparseRow | None:
        row = self.inner.weights(view)
        if row is not None:
            self.rows[view.tempo] = list(row)
        return row


def test_without_commit_reveal_a_copier_earns_what_the_honest_validator_earns() -> None:
    params = replace(RECOMMENDED.params, commit_reveal=False)
    market = MARKETS["per-tempo work"](60, np.random.default_rng(1))
    specs = [ValidatorSpec("honest", 1000 * RAO_PER_TAO, HonestValidator(ema_alpha=1.0), offset=2),
             ValidatorSpec("copier", 1000 * RAO_PER_TAO, CopierValidator(), offset=3)]
    result = simulate(params, specs, market, seed=1)
    assert dividend_ratio(result, "copier", ["honest"], warmup=5) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("reveal_period", [1, 2, 3])
def test_the_copier_commits_what_the_largest_honest_validator_committed_a_reveal_period_earlier(
    reveal_period: int,
) -> None:
    params = replace(RECOMMENDED.params, reveal_period=reveal_period)
    market = DriftingMarket(miners=6, jitter=0.5)(20, np.random.default_rng(2))
    small, large, copier = (Recorder(HonestValidator()), Recorder(HonestValidator()), Recorder(CopierValidator()))
    specs = [ValidatorSpec("small", 500 * RAO_PER_TAO, small, offset=2),
             ValidatorSpec("large", 2000 * RAO_PER_TAO, large, offset=4),
             ValidatorSpec("copier", 800 * RAO_PER_TAO, copier, offset=6)]
    simulate(params, specs, market, seed=2)
    assert copier.rows, "the copier never found revealed weights"
    assert min(copier.rows) == reveal_period  # nothing to copy before the first reveal
    lags = []
    for tempo, row in copier.rows.items():
        # The devnet runs an epoch every `tempo` blocks while commit epochs are `tempo + 1` blocks long, so now
        # and then a reveal slips by one tempo: the copy is then one tempo older still.
        lag = next(k for k in (reveal_period, reveal_period + 1) if large.rows.get(tempo - k) == row)
        lags.append(lag)
    assert lags.count(reveal_period) >= 0.75 * len(lags)


def test_under_the_recommended_regime_a_copier_earns_less_than_half() -> None:
    outcomes = [copying_outcome(RECOMMENDED, MARKETS["per-tempo work"], seed=seed, tempos=100) for seed in range(2)]
    ratios = [o.ratio for o in outcomes]
    assert max(ratios) < 0.5, ratios
    for outcome in outcomes:
        # the mechanism: the copier keeps about the share of miner incentive that did not change hands
        assert outcome.ratio == pytest.approx(outcome.overlap, abs=0.06)
        # honest miners are paid for what they did: over a day the pay follows their true performance
        assert outcome.miners.tracking > 0.95
        assert outcome.miners.window_churn < 2 * outcome.miners.window_performance_churn
        assert outcome.miners.paid_while_down < 0.15  # pay to miners that are down lags as the weights do


def test_in_a_steady_market_copying_still_pays() -> None:
    # The limit docs/incentives.md states: when nothing changes hands, a stale copy is as good as a fresh one.
    outcome = copying_outcome(RECOMMENDED, MARKETS["steady"], seed=0, tempos=60)
    assert outcome.ratio > 0.9
