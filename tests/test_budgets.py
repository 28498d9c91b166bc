"""Budget periods: UTC calendar days, ISO weeks (Monday) and months, year ends included."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from veilnet.budgets import period_bounds


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


@pytest.mark.parametrize(("reset", "now", "start", "end"), [
    ("daily", ts(2026, 12, 2, 13, 5), ts(2026, 12, 2), ts(2026, 12, 3)),
    ("daily", ts(2026, 12, 31, 23, 59, 59), ts(2026, 12, 31), ts(2027, 1, 1)),
    ("weekly", ts(2026, 12, 2, 13, 5), ts(2026, 11, 30), ts(2026, 12, 7)),  # a Wednesday: from Monday
    ("weekly", ts(2026, 11, 30), ts(2026, 11, 30), ts(2026, 12, 7)),  # Monday 00:00 starts a week
    ("weekly", ts(2027, 1, 2), ts(2026, 12, 28), ts(2027, 1, 4)),  # a week across the year's end
    ("monthly", ts(2026, 12, 2, 13, 5), ts(2026, 12, 1), ts(2027, 1, 1)),
    ("monthly", ts(2028, 2, 29, 12), ts(2028, 2, 1), ts(2028, 3, 1)),
])
def test_periods(reset: str, now: float, start: float, end: float) -> None:
    assert period_bounds(reset, now) == (start, end)


def test_unknown_reset_is_named() -> None:
    with pytest.raises(ValueError, match=r"daily, weekly, monthly.*'hourly'"):
        period_bounds("hourly", 0.0)
