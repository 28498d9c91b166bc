from __future__ import annotations

import random
from collections import Counter

from veilnet.gateway.routing import Candidate, CircuitBreaker, rank_candidates

A = Candidate("a", "http://a", score=0.9, price_input=1.0, price_output=1.0, context_length=4096)
B = Candidate("b", "http://b", score=0.1, price_input=0.5, price_output=0.5, context_length=4096)
C = Candidate("c", "http://c", score=0.5, price_input=2.0, price_output=2.0, context_length=4096)


def test_default_order_favours_score_per_price_but_spreads_traffic() -> None:
    rng = random.Random(1)
    firsts = Counter(rank_candidates([A, B, C], rng)[0].hotkey for _ in range(2000))
    assert firsts["a"] > firsts["c"] and firsts["a"] > firsts["b"]
    assert all(firsts[h] > 0 for h in "abc")


def test_explicit_sorts() -> None:
    rng = random.Random(0)
    assert [c.hotkey for c in rank_candidates([A, B, C], rng, sort="price")] == ["b", "a", "c"]
    assert [c.hotkey for c in rank_candidates([A, B, C], rng, sort="latency", latency_ms={"c": 5, "a": 9})] == ["c", "a", "b"]
    assert [c.hotkey for c in rank_candidates([A, B, C], rng, sort="throughput", throughput={"b": 90, "a": 30})] == ["b", "a", "c"]


def test_breaker_opens_after_failures_and_honours_retry_after() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30)
    for _ in range(2):
        breaker.failure("a", now=0)
    assert breaker.allows("a", now=0)
    breaker.failure("a", now=0)
    assert not breaker.allows("a", now=10) and breaker.allows("a", now=31)
    breaker.failure("b", retry_after=5, now=0)
    assert not breaker.allows("b", now=4) and breaker.allows("b", now=6)
    breaker.success("a")
    assert breaker.states(now=10) == {"a": "open", "b": "closed"}
