"""Choosing miners for a request: the typed candidates and their ranking, pure functions (no I/O). The
per-miner circuit breaker is :mod:`veilnet.gateway.breaker`."""

from __future__ import annotations

import random
from dataclasses import dataclass

from veilnet.gateway.breaker import CircuitBreaker
from veilnet.protocol.capacity import DEFAULT_MAX_BODY_BYTES
from veilnet.protocol.openai import TEXT_ONLY

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
    input_modalities: frozenset[str] = TEXT_ONLY  # what its requests may hold (text, image, audio)
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES  # the largest request body it takes

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
