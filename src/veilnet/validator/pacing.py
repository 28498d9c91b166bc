"""When the challenger sends each miner its next challenge (pure functions, no I/O).

- **Budget.** A miner's allowance for a window is this validator's stake-proportional quota there (the one
  quota the miner enforces for everything the validator sends), at most ``synthetic_share`` of it and at
  most ``challenges_per_window``; what the gateway's organic requests already used comes off first
  (:func:`veilnet.quotas.synthetic_budget`).
- **Unknown terms.** A miner whose ``/capacity`` cannot be read, or is invalid, gets the *normal* budget:
  the median allowance of the miners whose terms are known (as a rate, over the default window;
  ``challenges_per_window`` when none is known). Never more challenges than an honest miner gets: refusing to publish terms buys no
  extra challenges (and so no extra volume); each failed read is a reliability failure besides.
- **One budget, two spenders.** Probe rounds (:mod:`veilnet.validator.probe`) spend the same synthetic
  share; ``challenges_per_window`` bounds the challenges alone. The challenger and the prober run in one
  process and keep one :class:`SentLedger`, which sees a request the moment it is committed (the shared
  Redis counter, which also knows what an earlier process sent, is flushed later): neither can spend what
  the other just took.
- **Spacing.** Challenges to a miner form a Poisson process: each gap is drawn from an exponential
  distribution at the window's allowance over the whole window (or, when less is left, what is left over
  the time left), so a challenger that starts late in a window does not catch up in a burst. Organic
  arrivals from many independent apps look the same, so the time since the last request tells a miner
  nothing about which kind the next one is.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from veilnet.quotas import quota_for, synthetic_budget

__all__ = ["DEFAULT_WINDOW_SECONDS", "SentLedger", "allowance", "next_gap", "unknown_terms_allowance", "window_start"]

DEFAULT_WINDOW_SECONDS = 60  # the window a miner whose terms are unknown is paced over


Spender = Literal["challenge", "probe"]


def window_start(now_ms: int, window_seconds: int) -> int:
    """The start (unix ms) of the quota window of ``window_seconds`` that ``now_ms`` falls in."""
    return now_ms - now_ms % (window_seconds * 1000)


@dataclass
class SentLedger:
    """The synthetic requests this process sent, or committed to send, each miner in each of its quota
    windows, by spender."""

    _counts: dict[tuple[str, int], Counter[Spender]] = field(default_factory=dict)

    def add(self, miner: str, start_ms: int, spender: Spender) -> None:
        self._counts.setdefault((miner, start_ms), Counter())[spender] += 1

    def sent(self, miner: str, start_ms: int, spender: Spender | None = None) -> int:
        counts = self._counts.get((miner, start_ms))
        if counts is None:
            return 0
        return counts.total() if spender is None else counts[spender]

    def forget_before(self, start_ms: int) -> None:
        """Drop the windows that started before ``start_ms``."""
        for key in [k for k in self._counts if k[1] < start_ms]:
            del self._counts[key]


def allowance(capacity: int, stakes: Mapping[str, int], me: str, *, synthetic_share: float, cap: int) -> int:
    """The challenges a miner with ``capacity`` per window gets from validator ``me`` in a window without
    organic traffic."""
    return synthetic_budget(quota_for(capacity, stakes, me), 0, 0, synthetic_share=synthetic_share, cap=cap)


def unknown_terms_allowance(known: Iterable[tuple[int, int]], cap: int) -> int:
    """The allowance of a miner whose terms are unknown, over ``DEFAULT_WINDOW_SECONDS``: the median rate of
    the known miners' allowances (``known``: (allowance, window seconds) pairs) over that window, ``cap``
    when none is known."""
    rates = [count * DEFAULT_WINDOW_SECONDS / window for count, window in known if window > 0]
    return int(statistics.median(rates)) if rates else cap


def next_gap(rng: random.Random, left_s: float, budget: int, rate: float = math.inf) -> float:
    """Seconds until the next challenge: exponential, at the rate that spreads what is left of the budget
    over what is left of the window, never above ``rate`` (the window's allowance over the whole window: a
    challenger that starts late in a window does not catch up in a burst); ``left_s`` (the next window)
    when nothing is left."""
    if budget <= 0 or rate <= 0:
        return max(0.0, left_s)
    return rng.expovariate(min(budget / max(left_s, 1e-3), rate))
