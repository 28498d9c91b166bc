"""Choosing miners for a request: pure functions and a per-miner circuit breaker (no I/O)."""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field

__all__ = ["Candidate", "CircuitBreaker", "rank_candidates"]


@dataclass(frozen=True, slots=True)
class Candidate:
    hotkey: str
    url: str
    score: float
    price_input: float  # USD per million tokens
    price_output: float
    context_length: int
    supported_parameters: frozenset[str] = frozenset()
    data_collection: str = "allow"  # the miner's declared policy: "deny" = keeps no prompts or outputs

    @property
    def blended_price(self) -> float:
        return self.price_input + self.price_output


def rank_candidates(
    candidates: list[Candidate],
    rng: random.Random,
    *,
    sort: str | None = None,
    latency_ms: dict[str, float] | None = None,
    throughput: dict[str, float] | None = None,
) -> list[Candidate]:
    """Order to try miners in. By default a random order weighted by validator score per unit of price
    (so good, cheap miners are tried first most of the time, and every healthy miner gets some traffic);
    ``sort`` = ``price`` (cheapest first), ``latency`` (lowest recent p50 first) or ``throughput`` (most
    tokens/s first); miners without recent measurements come after the measured ones."""
    if sort == "price":
        return sorted(candidates, key=lambda c: (c.blended_price, -c.score))
    if sort == "latency":
        known = latency_ms or {}
        return sorted(candidates, key=lambda c: (c.hotkey not in known, known.get(c.hotkey, 0.0), c.blended_price))
    if sort == "throughput":
        rates = throughput or {}
        return sorted(candidates, key=lambda c: (c.hotkey not in rates, -rates.get(c.hotkey, 0.0), c.blended_price))
    pool = list(candidates)
    ordered: list[Candidate] = []
    while pool:
        weights = [max(c.score, 1e-6) / (c.blended_price + 0.01) for c in pool]
        pick = rng.choices(range(len(pool)), weights=weights)[0]
        ordered.append(pool.pop(pick))
    return ordered


@dataclass
class CircuitBreaker:
    """Per-miner circuit breaker. A miner's breaker opens (``allows`` is False) in three cases:

    * for ``cooldown`` seconds after ``threshold`` consecutive failures (a ``success`` resets the run);
    * for ``cooldown`` seconds when, among the miner's last ``window`` outcomes (one per ``success`` or
      ``failure`` call, the oldest dropped first), there are at least ``min_samples`` and the share of
      failures is at least ``failure_rate``; checked on each failure, so a miner failing every other
      request opens even though it never fails ``threshold`` times in a row;
    * for ``retry_after`` seconds when a failure carries the miner's Retry-After. Such a failure is the
      miner asking for a pause, not a sign of ill health: it is honoured as it always was and is counted
      neither in the consecutive run nor in the window, and it leaves both as they were.

    When it opens for ``cooldown`` (either of the first two rules), the miner's consecutive count and
    window are cleared, so after the cooldown it starts afresh. Memory is one count, one deadline and one
    window of at most ``window`` booleans per miner; ``allows`` is a dict lookup.
    """

    threshold: int = 3
    cooldown: float = 30.0
    window: int = 20
    min_samples: int = 10
    failure_rate: float = 0.5
    _failures: dict[str, int] = field(default_factory=dict)
    _open_until: dict[str, float] = field(default_factory=dict)
    _outcomes: dict[str, deque[bool]] = field(default_factory=dict)  # True = failure, newest last

    def __post_init__(self) -> None:
        if not 1 <= self.min_samples <= self.window:
            raise ValueError("need 1 <= min_samples <= window")
        if not 0.0 < self.failure_rate <= 1.0:
            raise ValueError("need 0 < failure_rate <= 1")

    def allows(self, hotkey: str, now: float | None = None) -> bool:
        return self._open_until.get(hotkey, 0.0) <= (time.monotonic() if now is None else now)

    def success(self, hotkey: str) -> None:
        self._failures.pop(hotkey, None)
        self._record(hotkey, failed=False)

    def failure(self, hotkey: str, *, retry_after: float | None = None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if retry_after is not None:
            self._open_until[hotkey] = now + retry_after
            return
        count = self._failures.get(hotkey, 0) + 1
        self._failures[hotkey] = count
        outcomes = self._record(hotkey, failed=True)
        too_many = len(outcomes) >= self.min_samples and sum(outcomes) / len(outcomes) >= self.failure_rate
        if count >= self.threshold or too_many:
            self._open_until[hotkey] = now + self.cooldown
            self._failures[hotkey] = 0
            outcomes.clear()

    def states(self, now: float | None = None) -> dict[str, str]:
        now = time.monotonic() if now is None else now
        return {hotkey: ("open" if until > now else "closed") for hotkey, until in self._open_until.items()}

    def _record(self, hotkey: str, *, failed: bool) -> deque[bool]:
        outcomes = self._outcomes.get(hotkey)
        if outcomes is None:
            outcomes = self._outcomes[hotkey] = deque(maxlen=self.window)
        outcomes.append(failed)
        return outcomes
