"""Decisions over a miner's recent verdicts, where one answer cannot tell (pure).

- :func:`greedy_cache_test`: at temperature > 0 an honest answer takes the reference's argmax at a checked
  position with probability at most that position's ``hit_bound``; a cache of greedy answers takes it every
  time. With positions drawn independently of the text, the hits form a sum of Bernoulli variables each
  conditionally below its bound, so Chernoff's bound holds: P(hits >= h) <= min over l > 0 of
  exp(-l h) prod(1 + b_i (e^l - 1)). The test calls the miner a greedy cache when that bound is below
  ``alpha``: an honest miner is misjudged with probability at most ``alpha`` per decision.
- :func:`substitution_test`: each chat verdict carries Fisher's statistic over its checked positions
  (conservative p-values); summed over answers it is at most chi-squared with twice the positions as degrees
  of freedom for the reference model itself, so a combined p-value below ``alpha`` says "another model".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from veilnet.tasks.chat import fisher_p_value
from veilnet.tasks.verdict import GreedyEvidence, Verdict

__all__ = ["SeriesDecision", "greedy_cache_test", "substitution_test"]


@dataclass(frozen=True)
class SeriesDecision:
    flagged: bool
    bound: float  # the probability that an honest miner shows evidence this strong (an upper bound)
    positions: int
    observed: float  # greedy: argmax hits; substitution: Fisher's statistic
    expected: float  # what an honest miner shows at most on average


def _chernoff(hits: int, bounds: list[float]) -> float:
    """min over l of exp(-l hits) prod(1 + b (e^l - 1)), on a grid fine enough for a decision."""
    expected = math.fsum(bounds)
    if hits <= expected:
        return 1.0
    best = 0.0  # log of the bound at l = 0
    for step in range(1, 400):
        lam = step * 0.05
        log_bound = -lam * hits + math.fsum(math.log1p(b * math.expm1(lam)) for b in bounds)
        best = min(best, log_bound)
    return math.exp(best)


def greedy_cache_test(evidence: Iterable[GreedyEvidence | None], *, alpha: float = 1e-6) -> SeriesDecision:
    """Whether answers sampled at temperature > 0 took the argmax too often to be sampled (``evidence``: the
    verdicts' ``greedy``, None ones skipped)."""
    hits, bounds = 0, list[float]()
    for item in evidence:
        if item is not None:
            hits += item.hits
            bounds.extend(item.hit_bounds)
    bound = _chernoff(hits, bounds)
    return SeriesDecision(bound < alpha, bound, len(bounds), float(hits), math.fsum(bounds))


def substitution_test(verdicts: Iterable[Verdict], *, alpha: float = 1e-9) -> SeriesDecision:
    """Whether the text of a miner's chat answers is, all together, too unlikely under the reference model."""
    statistic, positions = 0.0, 0
    for verdict in verdicts:
        statistic += verdict.fisher
        positions += verdict.text_positions
    bound = fisher_p_value(statistic, positions)
    return SeriesDecision(bound < alpha, bound, positions, statistic, 2.0 * positions)
