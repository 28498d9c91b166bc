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


def test_breaker_opens_on_a_high_failure_rate_without_a_failure_run() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, window=20, min_samples=10, failure_rate=0.5)
    for i in range(9):  # F S F S F S F S F: 5 of 9 failed, but fewer than min_samples outcomes
        if i % 2 == 0:
            breaker.failure("a", now=0)
        else:
            breaker.success("a")
        assert breaker.allows("a", now=0)
    breaker.success("a")  # 10 outcomes, 5 failed: a success never opens the breaker
    assert breaker.allows("a", now=0)
    breaker.failure("a", now=0)  # 11 outcomes, 6 failed
    assert not breaker.allows("a", now=29) and breaker.allows("a", now=30)
    assert breaker.states(now=10) == {"a": "open"}


def test_breaker_stays_closed_for_a_low_failure_rate() -> None:
    breaker = CircuitBreaker()
    for i in range(500):  # one failure in five
        if i % 5 == 0:
            breaker.failure("a", now=i)
        else:
            breaker.success("a")
        assert breaker.allows("a", now=i)
    assert breaker.states(now=500) == {}


def test_breaker_window_is_bounded() -> None:
    breaker = CircuitBreaker(window=20, min_samples=10, failure_rate=0.5)
    for _ in range(100):
        breaker.success("a")
    assert len(breaker._outcomes["a"]) == 20
    # failing every other request: with all 100 successes still counted this would stay far below 50%;
    # 17 outcomes in, the window holds 3 old successes and 9 of its 20 outcomes failed ...
    for i in range(17):
        if i % 2 == 0:
            breaker.failure("a", now=0)
        else:
            breaker.success("a")
    assert breaker.allows("a", now=0)
    breaker.success("a")
    breaker.failure("a", now=0)  # ... 19 in, 1 old success is left and 10 of 20 failed: it opens
    assert not breaker.allows("a", now=1)
    assert len(breaker._outcomes["a"]) == 0


def test_breaker_starts_afresh_after_a_failure_rate_cooldown() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, window=20, min_samples=10, failure_rate=0.5)
    for i in range(10):  # S F S F ...: the 10th outcome is the 5th failure
        if i % 2:
            breaker.failure("a", now=0)
        else:
            breaker.success("a")
    assert not breaker.allows("a", now=0)
    assert breaker.allows("a", now=30)
    # the consecutive count was cleared: the failure just before opening does not count towards three in a row
    breaker.failure("a", now=30)
    breaker.failure("a", now=30)
    assert breaker.allows("a", now=30)
    breaker.success("a")
    # the window was cleared: 5 of 9 outcomes failed since the cooldown, but that is under min_samples
    for i in range(6):
        if i % 2:
            breaker.success("a")
        else:
            breaker.failure("a", now=30)
    assert breaker.allows("a", now=30)
    breaker.failure("a", now=30)  # 10 outcomes since the cooldown, 6 failed
    assert not breaker.allows("a", now=31)


def test_breaker_retry_after_is_not_counted_as_a_failure() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, window=20, min_samples=10, failure_rate=0.5)
    for _ in range(9):
        breaker.success("a")
    breaker.failure("a", retry_after=5, now=0)  # honoured for its 5 s, and kept out of the window
    assert not breaker.allows("a", now=4) and breaker.allows("a", now=5)
    breaker.failure("a", now=5)  # 10 outcomes, 1 failed
    breaker.failure("a", now=5)  # 11 outcomes, 2 failed, 2 in a row (the 429 did not count)
    assert breaker.allows("a", now=5)
    breaker.failure("a", now=5)  # the third in a row opens for the cooldown, as before
    assert not breaker.allows("a", now=34) and breaker.allows("a", now=35)
