"""Admission control: a bounded number of running and waiting requests; beyond that, refuse at once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from veilnet.errors import Overloaded

__all__ = ["Admission"]


class Admission:
    """At most ``concurrency`` requests run and ``queue`` wait; the next one gets :class:`Overloaded`."""

    def __init__(self, concurrency: int, queue: int) -> None:
        if concurrency < 1 or queue < 0:
            raise ValueError("concurrency must be >= 1 and queue >= 0")
        self._slots = asyncio.Semaphore(concurrency)
        self._limit = concurrency + queue
        self._admitted = 0

    @property
    def in_flight(self) -> int:
        return self._admitted

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._admitted >= self._limit:
            raise Overloaded(f"backend is full ({self._limit} requests running or queued)", retry_after=1.0)
        self._admitted += 1
        try:
            async with self._slots:
                yield
        finally:
            self._admitted -= 1
