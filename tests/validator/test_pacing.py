"""The challenger's pacing as pure functions: budgets, the normal budget for unknown terms, Poisson gaps."""

from __future__ import annotations

import random
import statistics

from veilnet.validator.pacing import (
    DEFAULT_WINDOW_SECONDS,
    SentLedger,
    allowance,
    next_gap,
    unknown_terms_allowance,
    window_start,
)


def test_allowance_is_the_share_of_the_quota_within_the_cap() -> None:
    stakes = {"me": 3, "other": 1}
    assert allowance(100, stakes, "me", synthetic_share=0.5, cap=100) == 37  # floor(75 * 0.5)
    assert allowance(100, stakes, "me", synthetic_share=0.5, cap=12) == 12
    assert allowance(100, stakes, "nobody", synthetic_share=0.5, cap=12) == 0


def test_unknown_terms_get_the_median_rate_never_more() -> None:
    # allowances as rates over the default window: 12 per 60 s, 6 per 30 s (12 / 60 s), 30 per 60 s
    assert unknown_terms_allowance([(12, 60), (6, 30), (30, 60)], cap=100) == 12
    assert unknown_terms_allowance([(12, 60), (1, 10)], cap=100) == 9  # median of 12 and 6 per minute
    assert unknown_terms_allowance([], cap=7) == 7
    assert DEFAULT_WINDOW_SECONDS == 60


def test_gaps_are_exponential_at_the_capped_rate() -> None:
    rng = random.Random(5)
    gaps = [next_gap(rng, 60.0, 120) for _ in range(20_000)]  # 2 per second
    assert abs(statistics.fmean(gaps) - 0.5) < 0.02
    assert abs(statistics.pstdev(gaps) - 0.5) < 0.03  # exponential: the deviation equals the mean
    late = [next_gap(rng, 10.0, 120, rate=2.0) for _ in range(20_000)]  # 120 left for 10 s: no catch-up burst
    assert abs(statistics.fmean(late) - 0.5) < 0.02
    assert next_gap(rng, 7.0, 0) == 7.0  # spent: the next window


def test_the_ledger_counts_both_spenders_per_miner_and_window() -> None:
    ledger = SentLedger()
    start = window_start(125_000, 60)
    assert start == 120_000 and window_start(120_000, 60) == 120_000 and window_start(179_999, 60) == 120_000
    for spender in ("challenge", "probe", "probe"):
        ledger.add("m", start, spender)  # type: ignore[arg-type]
    ledger.add("m", start + 60_000, "challenge")
    ledger.add("other", start, "challenge")
    assert ledger.sent("m", start) == 3  # one budget: whoever spent it
    assert ledger.sent("m", start, "challenge") == 1 and ledger.sent("m", start, "probe") == 2
    assert ledger.sent("m", start + 60_000) == 1 and ledger.sent("nobody", start) == 0
    ledger.forget_before(start + 60_000)
    assert ledger.sent("m", start) == 0 and ledger.sent("other", start) == 0
    assert ledger.sent("m", start + 60_000, "challenge") == 1
