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
    breaker = CircuitBreaker(threshold=3, cooldown=30, backoff=1)
    for _ in range(2):
        breaker.failure("a", now=0)
    assert breaker.allows("a", now=0)
    breaker.failure("a", now=0)
    assert not breaker.allows("a", now=0.5) and breaker.allows("a", now=1)  # its first backoff is short
    breaker.failure("b", retry_after=5, now=0)
    assert not breaker.allows("b", now=4) and breaker.allows("b", now=6)
    assert breaker.states(now=0.5) == {"a": "open", "b": "open"}
    assert breaker.states(now=10) == {"a": "half_open", "b": "closed"}


def test_failures_while_open_do_not_push_its_deadline() -> None:
    """Requests sent before a breaker opened fail late (a hung miner, an outage): their news is old."""
    breaker = CircuitBreaker(threshold=3, cooldown=30, backoff=1)
    for _ in range(3):
        breaker.failure("a", now=0)
    for late in (0.2, 0.5, 0.9):  # a burst of late failures, more than the threshold
        breaker.failure("a", now=late)
    assert not breaker.allows("a", now=0.99) and breaker.allows("a", now=1.0)
    breaker.success("a")  # a late success from before is not the probe's either
    assert breaker.state("a", now=0.5) == "open"


def test_half_open_lets_one_probe_through_and_closes_on_its_success() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, backoff=1)
    for _ in range(3):
        breaker.failure("a", now=0)
    assert not breaker.claim("a", now=0.5)
    assert breaker.claim("a", now=1.0)  # the probe
    assert not breaker.claim("a", now=1.1) and not breaker.allows("a", now=1.1)  # one at a time
    breaker.success("a")
    assert breaker.state("a", now=1.2) == "closed"
    assert all(breaker.claim("a", now=1.2) for _ in range(5))
    # counts start afresh: two failures do not reopen it, three do, again for the first backoff only
    breaker.failure("a", now=2)
    breaker.failure("a", now=2)
    assert breaker.allows("a", now=2)
    breaker.failure("a", now=2)
    assert not breaker.allows("a", now=2.5) and breaker.allows("a", now=3)


def test_each_failed_probe_doubles_the_backoff_up_to_the_cooldown() -> None:
    breaker = CircuitBreaker(threshold=1, cooldown=8, backoff=1)
    breaker.failure("a", now=0)
    now, waits = 0.0, []
    for _ in range(6):
        opens_at = next(t / 100 for t in range(int(now * 100), 10_000) if breaker.allows("a", now=t / 100))
        waits.append(round(opens_at - now, 2))
        now = opens_at
        assert breaker.claim("a", now=now)
        breaker.failure("a", now=now)  # the probe fails
    assert waits == [1, 2, 4, 8, 8, 8]
    assert breaker.claim("a", now=now + 8)
    breaker.success("a")
    breaker.failure("a", now=100)  # after a success the next opening is short again
    assert breaker.allows("a", now=101)


def test_a_probe_that_reports_nothing_frees_its_slot() -> None:
    breaker = CircuitBreaker(threshold=1, backoff=1, probe_timeout=10)
    breaker.failure("a", now=0)
    assert breaker.claim("a", now=1)
    breaker.release("a")  # its client left, or the gateway's own error: nothing learnt about the miner
    assert breaker.claim("a", now=1.5)  # another probe may go at once
    assert not breaker.claim("a", now=2)
    assert breaker.claim("a", now=11.6)  # and one that never reports is given up after probe_timeout


def test_a_pause_is_not_a_failure_and_a_paused_probe_keeps_its_backoff() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, backoff=1)
    breaker.pause("a", 1.0, now=0)
    assert not breaker.claim("a", now=0.5) and breaker.claim("a", now=1.0)
    for _ in range(10):
        breaker.pause("a", 1.0, now=1)  # a dependency outage: many pauses, never an opening
    assert breaker.state("a", now=2.5) == "closed"
    for _ in range(3):
        breaker.failure("a", now=3)
    assert breaker.claim("a", now=4)
    breaker.pause("a", 1.0, now=4)  # the probe's miner asked for a pause: the next probe after it
    assert not breaker.allows("a", now=4.5) and breaker.claim("a", now=5)
    breaker.failure("a", now=5)  # the backoff grew once only: 2 s
    assert not breaker.allows("a", now=6.9) and breaker.allows("a", now=7)
    assert CircuitBreaker(max_pause=60).states() == {}
    capped = CircuitBreaker(max_pause=60)
    capped.pause("b", 10**6, now=0)
    assert capped.allows("b", now=60)


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
    assert not breaker.allows("a", now=0.5) and breaker.allows("a", now=1)
    assert breaker.states(now=0.5) == {"a": "open"}


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
    assert len(breaker._miners["a"].outcomes) == 20
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
    assert not breaker.allows("a", now=0.5)
    assert len(breaker._miners["a"].outcomes) == 0


def test_breaker_starts_afresh_after_its_probe_succeeds() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, window=20, min_samples=10, failure_rate=0.5, backoff=1)
    for i in range(10):  # S F S F ...: the 10th outcome is the 5th failure
        if i % 2:
            breaker.failure("a", now=0)
        else:
            breaker.success("a")
    assert not breaker.allows("a", now=0)
    assert breaker.claim("a", now=1)
    breaker.success("a")
    # the consecutive count was cleared: the failure just before opening does not count towards three in a row
    breaker.failure("a", now=30)
    breaker.failure("a", now=30)
    assert breaker.allows("a", now=30)
    breaker.success("a")
    # the window was cleared: 5 of 9 outcomes failed since the probe, but that is under min_samples
    for i in range(6):
        if i % 2:
            breaker.success("a")
        else:
            breaker.failure("a", now=30)
    assert breaker.allows("a", now=30)
    breaker.failure("a", now=30)  # 10 outcomes since the probe, 6 failed
    assert not breaker.allows("a", now=30.5)


def test_breaker_retry_after_is_not_counted_as_a_failure() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=30, window=20, min_samples=10, failure_rate=0.5, backoff=5)
    for _ in range(9):
        breaker.success("a")
    breaker.failure("a", retry_after=5, now=0)  # honoured for its 5 s, and kept out of the window
    assert not breaker.allows("a", now=4) and breaker.allows("a", now=5)
    breaker.failure("a", now=5)  # 10 outcomes, 1 failed
    breaker.failure("a", now=5)  # 11 outcomes, 2 failed, 2 in a row (the 429 did not count)
    assert breaker.allows("a", now=5)
    breaker.failure("a", now=5)  # the third in a row opens it, as before
    assert not breaker.allows("a", now=9.9) and breaker.allows("a", now=10)
