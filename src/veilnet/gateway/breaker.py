"""Per-miner circuit breakers (no I/O): closed, open, half-open, and pauses a miner asks for.

* **closed**: requests go to the miner and its outcomes count. It trips (opens) after ``threshold``
  consecutive failures, or when among its last ``window`` outcomes there are at least ``min_samples`` and
  at least ``failure_rate`` of them failed (checked on each failure: a miner failing every other request
  trips though it never fails ``threshold`` times in a row).
* **open**: no requests for a backoff that starts at ``backoff`` seconds and doubles each time a probe
  fails, up to ``cooldown``. Outcomes that arrive meanwhile (requests sent before it opened) are ignored:
  they neither extend nor restart the backoff, so a burst of late failures cannot stretch an outage.
* **half-open**: once the backoff has passed, one request is let through as a probe (:meth:`claim`); its
  success closes the breaker (counts, window and backoff start afresh), its failure opens it again for
  twice as long. A probe that reports nothing within ``probe_timeout`` (its client left) frees its slot.
* **paused**: a miner that asks for a pause (``Retry-After`` on a 429 or 503) or reports a dependency
  outage is skipped for that long (:meth:`pause`) and nothing is counted; it is not ill.

Outcomes that are neither the miner's success nor its failure (the client's invalid request, the gateway's
own stale signature) :meth:`release` a probe and change nothing else. Memory per miner: one small record and
a window of at most ``window`` booleans; :meth:`allows` and :meth:`claim` are a dict lookup for a healthy
miner.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["BreakerState", "CircuitBreaker"]

BreakerState = Literal["closed", "open", "half_open"]


class _Miner:
    __slots__ = ("backoff", "failures", "outcomes", "paused_until", "probe_until", "state", "until")

    def __init__(self, backoff: float, window: int) -> None:
        self.state: BreakerState = "closed"
        self.failures = 0  # consecutive, while closed
        self.outcomes: deque[bool] = deque(maxlen=window)  # True = failure, newest last
        self.until = 0.0  # open: no requests before this
        self.backoff = backoff  # the next opening's length
        self.probe_until = 0.0  # half-open: a probe is out until this
        self.paused_until = 0.0  # closed: skipped until this (the miner asked)


@dataclass
class CircuitBreaker:
    threshold: int = 3
    cooldown: float = 30.0  # the longest an open breaker waits before its next probe
    window: int = 20
    min_samples: int = 10
    failure_rate: float = 0.5
    backoff: float = 1.0  # the first opening's length (doubles per failed probe, up to cooldown)
    probe_timeout: float = 60.0
    max_pause: float = 300.0  # a pause a miner asks for is honoured up to this
    _miners: dict[str, _Miner] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 1 <= self.min_samples <= self.window:
            raise ValueError("need 1 <= min_samples <= window")
        if not 0.0 < self.failure_rate <= 1.0:
            raise ValueError("need 0 < failure_rate <= 1")
        if not 0.0 < self.backoff <= self.cooldown:
            raise ValueError("need 0 < backoff <= cooldown")

    def _miner(self, hotkey: str) -> _Miner:
        miner = self._miners.get(hotkey)
        if miner is None:
            miner = self._miners[hotkey] = _Miner(self.backoff, self.window)
        return miner

    def allows(self, hotkey: str, now: float | None = None) -> bool:
        """Whether a request may be sent to the miner now (nothing changes; :meth:`claim` takes the slot)."""
        miner = self._miners.get(hotkey)
        if miner is None:
            return True
        now = time.monotonic() if now is None else now
        if miner.state == "closed":
            return miner.paused_until <= now
        if miner.state == "open":
            return miner.until <= now
        return miner.probe_until <= now

    def claim(self, hotkey: str, now: float | None = None) -> bool:
        """Take the right to send a request now: always while closed (and not paused), and for one probe at
        a time once an open breaker's backoff has passed."""
        miner = self._miners.get(hotkey)
        if miner is None:
            return True
        now = time.monotonic() if now is None else now
        if miner.state == "closed":
            return miner.paused_until <= now
        if (miner.until if miner.state == "open" else miner.probe_until) > now:
            return False
        miner.state, miner.probe_until = "half_open", now + self.probe_timeout
        return True

    def success(self, hotkey: str) -> None:
        miner = self._miner(hotkey)
        if miner.state == "closed":
            miner.failures = 0
            miner.outcomes.append(False)
        elif miner.state == "half_open":  # the probe came back well: start afresh
            miner.state, miner.failures, miner.backoff = "closed", 0, self.backoff
            miner.outcomes.clear()

    def failure(self, hotkey: str, *, retry_after: float | None = None, now: float | None = None) -> None:
        """The miner failed a request (with ``retry_after``: it asked for a pause instead, see :meth:`pause`)."""
        now = time.monotonic() if now is None else now
        if retry_after is not None:
            self.pause(hotkey, retry_after, now=now)
            return
        miner = self._miner(hotkey)
        if miner.state == "open":
            return  # sent before it opened: its news is old
        if miner.state == "half_open":  # the probe failed: wait twice as long before the next one
            miner.backoff = min(miner.backoff * 2, self.cooldown)
            self._open(miner, now)
            return
        miner.failures += 1
        outcomes = miner.outcomes
        outcomes.append(True)
        too_many = len(outcomes) >= self.min_samples and sum(outcomes) / len(outcomes) >= self.failure_rate
        if miner.failures >= self.threshold or too_many:
            self._open(miner, now)

    def pause(self, hotkey: str, seconds: float, *, now: float | None = None) -> None:
        """Skip the miner for ``seconds`` (up to ``max_pause``) without counting anything against it. A
        probe answered with a pause waits that long for the next probe, its backoff unchanged."""
        now = time.monotonic() if now is None else now
        until = now + min(max(seconds, 0.0), self.max_pause)
        miner = self._miner(hotkey)
        if miner.state == "closed":
            miner.paused_until = max(miner.paused_until, until)
        elif miner.state == "half_open":
            miner.state, miner.until = "open", until

    def release(self, hotkey: str) -> None:
        """An outcome that says nothing about the miner's health: a probe's slot is freed, nothing counted."""
        miner = self._miners.get(hotkey)
        if miner is not None and miner.state == "half_open":
            miner.probe_until = 0.0

    def state(self, hotkey: str, now: float | None = None) -> BreakerState:
        miner = self._miners.get(hotkey)
        if miner is None:
            return "closed"
        now = time.monotonic() if now is None else now
        if miner.state == "closed":
            return "open" if miner.paused_until > now else "closed"
        if miner.state == "open" and miner.until <= now:
            return "half_open"
        return miner.state

    def states(self, now: float | None = None) -> dict[str, BreakerState]:
        """Every miner that was ever opened or paused, with its state now (a paused miner reads as open)."""
        now = time.monotonic() if now is None else now
        return {hotkey: self.state(hotkey, now) for hotkey, miner in self._miners.items()
                if miner.state != "closed" or miner.paused_until or miner.backoff != self.backoff
                or miner.until}

    def _open(self, miner: _Miner, now: float) -> None:
        miner.state, miner.until = "open", now + miner.backoff
        miner.failures = 0
        miner.outcomes.clear()
