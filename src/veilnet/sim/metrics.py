"""What a simulation paid, and to whom: validators' dividends per unit stake, and how miners' incentive
followed their true performance. Pure functions over a :class:`~veilnet.sim.driver.SimResult`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from veilnet.errors import ConfigError
from veilnet.sim.driver import SimResult

__all__ = ["MinerFairness", "dividend_ratio", "dividends_per_stake", "incentive_overlap", "miner_fairness"]


def dividends_per_stake(result: SimResult, *, warmup: int = 0) -> dict[str, float]:
    """Each validator's validator emission summed over epochs ``warmup..``, each epoch's divided by its stake."""
    if not 0 <= warmup < result.epochs:
        raise ConfigError(f"warmup must be 0..{result.epochs - 1}, got {warmup}")
    emission = result.validator_emission[warmup:].astype(np.float64)
    stake = result.stake[warmup:].astype(np.float64)
    return {
        name: float(np.sum(np.divide(emission[:, uid], stake[:, uid], out=np.zeros(len(stake)), where=stake[:, uid] > 0)))
        for name, uid in result.validator_uids.items()
    }


def dividend_ratio(result: SimResult, name: str, baseline: list[str], *, warmup: int = 0) -> float:
    """``name``'s dividends per unit stake over the mean of ``baseline``'s (e.g. a copier over the honest)."""
    per_stake = dividends_per_stake(result, warmup=warmup)
    reference = float(np.mean([per_stake[b] for b in baseline]))
    return per_stake[name] / reference if reference > 0 else float("nan")


@dataclass(frozen=True)
class MinerFairness:
    """How miner emission followed the miners' true performance, over epochs ``warmup..``.

    ``tracking``: correlation, across miners, of each one's total incentive with its total true performance.
    ``churn``: mean over epochs of the total-variation distance between consecutive epochs' incentive
    shares (how much of the miners' pay changes hands from one epoch to the next);
    ``performance_churn``: the same for true performance shares (what the world itself changes).
    ``window_churn`` and ``window_performance_churn``: the same over consecutive windows of ``window``
    epochs (a day is 20 tempos of 360 blocks): how much a miner's pay over a day moves.
    ``paid_while_down``: share of miner incentive paid to miners in epochs they were down (or not yet
    serving).
    """

    tracking: float
    churn: float
    performance_churn: float
    window_churn: float
    window_performance_churn: float
    paid_while_down: float


def _shares(matrix: NDArray[np.float64]) -> NDArray[np.float64]:
    totals = matrix.sum(axis=1, keepdims=True)
    return np.asarray(np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0), dtype=np.float64)


def _window_sums(matrix: NDArray[np.float64], window: int) -> NDArray[np.float64]:
    whole = matrix.shape[0] // window * window
    return np.asarray(matrix[:whole].reshape(-1, window, matrix.shape[1]).sum(axis=1), dtype=np.float64)


def _churn(shares: NDArray[np.float64]) -> float:
    if shares.shape[0] < 2:
        return 0.0
    return float(0.5 * np.abs(np.diff(shares, axis=0)).sum(axis=1).mean())


def miner_fairness(result: SimResult, *, warmup: int = 0, window: int = 20) -> MinerFairness:
    if not 0 <= warmup < result.epochs:
        raise ConfigError(f"warmup must be 0..{result.epochs - 1}, got {warmup}")
    registered = result.miner_uids >= 0
    uids = result.miner_uids[registered]
    performance = result.market.performance[warmup : result.epochs][:, registered]
    incentive = result.incentive[warmup:, uids].astype(np.float64)
    totals_i, totals_p = incentive.sum(axis=0), performance.sum(axis=0)
    tracking = float(np.corrcoef(totals_i, totals_p)[0, 1]) if len(uids) > 1 and totals_i.std() > 0 else float("nan")
    total_incentive = incentive.sum()
    paid_down = float(incentive[performance <= 0].sum() / total_incentive) if total_incentive > 0 else 0.0
    return MinerFairness(
        tracking=tracking,
        churn=_churn(_shares(incentive)),
        performance_churn=_churn(_shares(performance)),
        window_churn=_churn(_shares(_window_sums(incentive, window))),
        window_performance_churn=_churn(_shares(_window_sums(performance, window))),
        paid_while_down=paid_down,
    )


def incentive_overlap(result: SimResult, lag: int, *, warmup: int = 0) -> float:
    """Mean over epochs ``warmup + lag..`` of the overlap ``sum_j min(s_t[j], s_{t-lag}[j])`` of the miners'
    incentive shares ``lag`` epochs apart: 1 minus the share of miner incentive that changed hands.

    A copier whose weights are ``lag`` epochs older than the weights in force earns, per unit stake, about
    this fraction of an honest validator's dividends (docs/incentives.md, "Weight copying")."""
    if lag < 1 or warmup + lag >= result.epochs:
        raise ConfigError(f"need lag >= 1 and warmup + lag < {result.epochs}")
    uids = result.miner_uids[result.miner_uids >= 0]
    shares = _shares(result.incentive[warmup:, uids].astype(np.float64))
    return float(np.minimum(shares[lag:], shares[:-lag]).sum(axis=1).mean())
