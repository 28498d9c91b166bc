"""Validator strategies for the simulator: what a validator commits each tempo.

A strategy is any object with ``weights(view) -> SparseRow | None`` (u16 weights by uid, or None to skip the
tempo). It sees only what a real validator could: its own measurements of the miners in the tempo that just
ended, and the chain's public state (stakes and the weights in force, i.e. set or revealed; never a commit).

- :class:`HonestValidator` measures every registered miner with its own noise, folds the measurements into
  per-miner scores with an EMA, and turns scores into weights with a pluggable :data:`ScoresToWeights`
  (default :func:`sharpened`), then to u16 as the real validator does.
- :class:`CopierValidator` measures nothing: it commits the public weights of the largest other validator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from veilnet.chain.epoch import SparseRow
from veilnet.chain.weights import scores_to_u16_weights

__all__ = [
    "CopierValidator",
    "HonestValidator",
    "PublicChain",
    "ScoresToWeights",
    "Strategy",
    "ValidatorView",
    "sharpened",
]

ScoresToWeights = Callable[[Mapping[int, float]], dict[int, float]]


class PublicChain(Protocol):
    """What anyone can read from the chain."""

    @property
    def n(self) -> int: ...

    def stake(self, uid: int) -> int: ...

    def weights(self, uid: int) -> SparseRow: ...


@dataclass(frozen=True)
class ValidatorView:
    tempo: int  # the tempo whose measurements are now available
    uid: int  # the acting validator
    performance: Mapping[int, float]  # true performance of each registered miner in that tempo, by uid
    chain: PublicChain
    validators: tuple[int, ...]  # uids run as validators (all of them, the acting one included)
    rng: np.random.Generator


class Strategy(Protocol):
    def weights(self, view: ValidatorView) -> SparseRow | None: ...


def sharpened(power: float = 2.0) -> ScoresToWeights:
    """Scores raised to ``power``, normalised (``veilnet.scoring`` sharpens each miner's service by the same
    exponent inside its credit, then normalises shares linearly)."""

    def to_weights(scores: Mapping[int, float]) -> dict[int, float]:
        raised = {uid: max(score, 0.0) ** power for uid, score in scores.items()}
        total = sum(raised.values())
        return {uid: (value / total if total > 0 else 0.0) for uid, value in raised.items()}

    return to_weights


def _u16_row(weights: Mapping[int, float]) -> SparseRow | None:
    uids, values = scores_to_u16_weights(dict(weights))
    return list(zip(uids, values, strict=True)) or None


@dataclass
class HonestValidator:
    """Scores each miner from its own noisy measurements. ``noise``: log-normal sigma of one tempo's
    measurement (a finite sample of challenges); ``ema_alpha``: weight of the newest measurement in the score
    (1.0: the score is the latest measurement); a miner's first measurement sets its score."""

    noise: float = 0.1
    ema_alpha: float = 0.3
    to_weights: ScoresToWeights = field(default_factory=sharpened)
    scores: dict[int, float] = field(default_factory=dict)

    def weights(self, view: ValidatorView) -> SparseRow | None:
        for uid, performance in view.performance.items():
            measured = performance * float(np.exp(view.rng.normal(0.0, self.noise))) if self.noise > 0 else performance
            previous = self.scores.get(uid)
            self.scores[uid] = measured if previous is None else (
                self.ema_alpha * measured + (1 - self.ema_alpha) * previous
            )
        return _u16_row(self.to_weights(self.scores))


@dataclass
class CopierValidator:
    """Copies the public weights of the largest-stake other validator that has any."""

    def weights(self, view: ValidatorView) -> SparseRow | None:
        others = [uid for uid in view.validators if uid != view.uid and view.chain.weights(uid)]
        if not others:
            return None
        target = max(others, key=lambda uid: (view.chain.stake(uid), -uid))
        return view.chain.weights(target)
