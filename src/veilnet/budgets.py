"""Spending budgets that reset: the calendar periods an API key's budget counts in (pure, no I/O).

A budget resets ``daily`` at 00:00 UTC, ``weekly`` on Monday 00:00 UTC and ``monthly`` on the 1st at 00:00
UTC (OpenRouter's key limits reset the same way). Times are Unix seconds.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal, get_args

__all__ = ["BUDGET_RESETS", "BudgetReset", "period_bounds"]

BudgetReset = Literal["daily", "weekly", "monthly"]
BUDGET_RESETS: tuple[str, ...] = get_args(BudgetReset)


def period_bounds(reset: str, now: float) -> tuple[float, float]:
    """The start and end (exclusive) of the ``reset`` period holding ``now``."""
    day = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if reset == "daily":
        start, end = day, day + dt.timedelta(days=1)
    elif reset == "weekly":
        start = day - dt.timedelta(days=day.weekday())
        end = start + dt.timedelta(days=7)
    elif reset == "monthly":
        start = day.replace(day=1)
        end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    else:
        raise ValueError(f"budget reset must be one of {', '.join(BUDGET_RESETS)}, not {reset!r}")
    return start.timestamp(), end.timestamp()
