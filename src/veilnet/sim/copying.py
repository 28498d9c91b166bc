"""The weight-copying study: what a copier validator earns per unit stake against honest validators, per
chain setting, scoring dynamics and market, and what the honest miners' pay looks like meanwhile.

Four honest validators (stakes 1000, 1300, 1600, 1900) and a copier (1000) that commits the public weights of
the largest of them, on a subnet of 16 miners (12 from the start, 4 arriving later), for 140 tempos; the
first 20 are left out. Stake is held fixed (emission paid out) so that dividends per unit stake compare
directly. ``python -m veilnet.sim.copying`` prints the table of docs/incentives.md ("Weight copying").
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from veilnet.chain.types import RAO_PER_TAO
from veilnet.sim.chain import SubnetParams
from veilnet.sim.driver import SimResult, ValidatorSpec, simulate
from veilnet.sim.market import DriftingMarket, MarketModel, MarketTrajectory, steady_market
from veilnet.sim.metrics import MinerFairness, dividend_ratio, incentive_overlap, miner_fairness
from veilnet.sim.validators import CopierValidator, HonestValidator, sharpened

__all__ = ["MARKETS", "RECOMMENDED", "REGIMES", "CopyingOutcome", "Regime", "copying_outcome", "main", "run_market"]

HONEST_STAKES = (1000, 1300, 1600, 1900)
COPIER_STAKE = 1000
TEMPOS = 140
WARMUP = 20


@dataclass(frozen=True)
class Regime:
    """Chain settings plus the honest validators' scoring dynamics."""

    name: str
    params: SubnetParams
    ema_alpha: float  # weight of each tempo's fresh measurement in the score
    sharpen: float = 2.0
    noise: float = 0.1  # log-normal sigma of one validator's measurement of one miner in one tempo


def _fixed(miners: int, initial: int) -> MarketModel:
    def model(tempos: int, rng: np.random.Generator) -> MarketTrajectory:
        performance = list(np.exp(rng.normal(0.0, 0.5, size=miners)))
        trajectory = steady_market(performance, tempos)
        arrival = np.zeros(miners, dtype=np.int64)
        arrival[initial:] = rng.integers(1, tempos, size=miners - initial)
        registered = np.arange(tempos)[:, None] >= arrival[None, :]
        return MarketTrajectory(performance=trajectory.performance * registered, arrival=arrival)

    return model


MARKETS: dict[str, MarketModel] = {
    # Miners whose service never changes (new ones still arrive): what the devnet measured.
    "steady": _fixed(16, 12),
    # Persistent change: capacity drifts 10 % a tempo, 5 % of running miners go down each tempo (for ~3).
    "drifting": DriftingMarket(miners=16, initial=12, drift=0.1, jitter=0.1, outage_rate=0.05),
    # The pay split follows each tempo's verified work, which moves with demand and routing (sigma 0.7).
    "per-tempo work": DriftingMarket(miners=16, initial=12, drift=0.1, jitter=0.7, outage_rate=0.05),
}

_CHAIN = SubnetParams(restake=False)
_P2 = replace(_CHAIN, reveal_period=2)
REGIMES: tuple[Regime, ...] = (
    Regime("commit-reveal off, score EMA 0.3", replace(_CHAIN, commit_reveal=False), ema_alpha=0.3),
    Regime("reveal period 1, score EMA 0.3", _CHAIN, ema_alpha=0.3),
    Regime("reveal period 2, score EMA 0.3", _P2, ema_alpha=0.3),
    Regime("reveal period 3, score EMA 0.3", replace(_CHAIN, reveal_period=3), ema_alpha=0.3),
    Regime("reveal period 1, fresh scores", _CHAIN, ema_alpha=1.0),
    Regime("reveal period 2, fresh scores", _P2, ema_alpha=1.0),
    Regime("reveal period 3, fresh scores", replace(_CHAIN, reveal_period=3), ema_alpha=1.0),
    Regime("reveal period 2, score EMA 0.7", _P2, ema_alpha=0.7),
    Regime("reveal period 2, fresh scores, no sharpening", _P2, ema_alpha=1.0, sharpen=1.0),
    Regime("reveal period 2, fresh scores, liquid alpha", replace(_P2, liquid_alpha=True), ema_alpha=1.0),
    Regime("reveal period 2, fresh scores, bonds avg 0.975", replace(_P2, bonds_moving_average=975_000), ema_alpha=1.0),
    Regime("reveal period 2, fresh scores, bonds penalty 0", replace(_P2, bonds_penalty=0), ema_alpha=1.0),
    Regime("reveal period 2, fresh scores, legacy Yuma", replace(_P2, yuma3=False), ema_alpha=1.0),
)
RECOMMENDED = next(r for r in REGIMES if r.name == "reveal period 2, fresh scores")


@dataclass(frozen=True)
class CopyingOutcome:
    ratio: float  # copier's dividends per unit stake over the honest validators' mean
    overlap: float  # miners' incentive overlap at the copier's lag (the predictor of ``ratio``)
    miners: MinerFairness


def run_market(regime: Regime, market: MarketTrajectory, *, seed: int) -> SimResult:
    specs = [
        ValidatorSpec(f"honest-{i}", stake * RAO_PER_TAO,
                      HonestValidator(noise=regime.noise, ema_alpha=regime.ema_alpha, to_weights=sharpened(regime.sharpen)))
        for i, stake in enumerate(HONEST_STAKES)
    ]
    specs.append(ValidatorSpec("copier", COPIER_STAKE * RAO_PER_TAO, CopierValidator(), offset=3))
    return simulate(regime.params, specs, market, seed=seed)


def copying_outcome(regime: Regime, market: MarketModel, *, seed: int, tempos: int = TEMPOS) -> CopyingOutcome:
    result = run_market(regime, market(tempos, np.random.default_rng(10_000 + seed)), seed=seed)
    honest = [f"honest-{i}" for i in range(len(HONEST_STAKES))]
    lag = regime.params.reveal_period if regime.params.commit_reveal else 0
    return CopyingOutcome(
        ratio=dividend_ratio(result, "copier", honest, warmup=WARMUP),
        overlap=incentive_overlap(result, lag, warmup=WARMUP) if lag else 1.0,
        miners=miner_fairness(result, warmup=WARMUP),
    )


def _mean(outcomes: list[CopyingOutcome], field: str) -> float:
    return float(np.mean([getattr(o.miners, field) for o in outcomes]))


def main(seeds: int = 3) -> None:
    names = list(MARKETS)
    print("copier's dividends per unit stake / honest validators' (mean of "
          f"{seeds} seeds; in brackets: 1 - share of miner incentive changing hands over the copier's lag)")
    print("| regime | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    fresh = [r for r in REGIMES if r.name.endswith(", fresh scores")]
    kept: dict[tuple[str, str], list[CopyingOutcome]] = {}
    for regime in REGIMES:
        cells = []
        for name in names:
            outcomes = [copying_outcome(regime, MARKETS[name], seed=s) for s in range(seeds)]
            kept[regime.name, name] = outcomes
            cells.append(f"{np.mean([o.ratio for o in outcomes]):.2f} ({np.mean([o.overlap for o in outcomes]):.2f})")
        print(f"| {regime.name} | " + " | ".join(cells) + " |")
    print(f"\nhonest miners (mean of {seeds} seeds; in brackets: the same for the miners' true performance)")
    print("| regime | market | pay changing hands per tempo | per 20 tempos | tracking | paid while down |")
    print("|---|---|---|---|---|---|")
    for regime in fresh:
        for name in names[1:]:
            outcomes = kept[regime.name, name]
            print(f"| {regime.name} | {name} | {_mean(outcomes, 'churn'):.2f} ({_mean(outcomes, 'performance_churn'):.2f}) | "
                  f"{_mean(outcomes, 'window_churn'):.2f} ({_mean(outcomes, 'window_performance_churn'):.2f}) | "
                  f"{_mean(outcomes, 'tracking'):.2f} | {_mean(outcomes, 'paid_while_down'):.3f} |")


if __name__ == "__main__":
    main()
