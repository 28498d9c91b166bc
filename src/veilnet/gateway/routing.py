"""Choosing miners for a request: pure functions and a per-miner circuit breaker (no I/O)."""

from __future__ import annotations

import random
import time
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
    """Opens for ``cooldown`` seconds after ``threshold`` consecutive failures (or for a miner's Retry-After)."""

    threshold: int = 3
    cooldown: float = 30.0
    _failures: dict[str, int] = field(default_factory=dict)
    _open_until: dict[str, float] = field(default_factory=dict)

    def allows(self, hotkey: str, now: float | None = None) -> bool:
        return self._open_until.get(hotkey, 0.0) <= (time.monotonic() if now is None else now)

    def success(self, hotkey: str) -> None:
        self._failures.pop(hotkey, None)

    def failure(self, hotkey: str, *, retry_after: float | None = None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if retry_after is not None:
            self._open_until[hotkey] = now + retry_after
            return
        count = self._failures.get(hotkey, 0) + 1
        self._failures[hotkey] = count
        if count >= self.threshold:
            self._open_until[hotkey] = now + self.cooldown
            self._failures[hotkey] = 0

    def states(self, now: float | None = None) -> dict[str, str]:
        now = time.monotonic() if now is None else now
        return {hotkey: ("open" if until > now else "closed") for hotkey, until in self._open_until.items()}
