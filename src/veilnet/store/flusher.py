"""A background writer for stores that count in-process and write in batches (ledger rows, rate-limit and
organic counters): one task, started when there is something to write, that calls ``flush`` every
``interval`` while ``pending()`` holds and retries on its own, backing off up to ``MAX_BACKOFF`` seconds,
while the store is unreachable (nothing else has to happen for the rows to be written once it is back). A
``flush`` that fails or is cancelled keeps its batch for the next one. No failure ends the task: an
unexpected one is logged with its traceback and retried like the others."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from veilnet.errors import StoreError

__all__ = ["Flusher"]

log = logging.getLogger(__name__)

MAX_BACKOFF = 5.0


class Flusher:
    def __init__(self, flush: Callable[[], Awaitable[None]], pending: Callable[[], bool], *, interval: float,
                 what: str) -> None:
        self._flush = flush
        self._pending = pending
        self.interval = interval
        self._what = what
        self._task: asyncio.Task[None] | None = None
        self._writing = False  # the task is inside flush(): stop() lets it finish
        self._stopping = False

    def soon(self) -> None:
        """Make sure a flush follows within ``interval`` (needs a running event loop)."""
        if self._stopping:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        delay = self.interval
        while self._pending() and not self._stopping:
            await asyncio.sleep(delay)
            self._writing = True
            try:
                await self._flush()
                delay = self.interval
            except StoreError as exc:
                delay = min(MAX_BACKOFF, max(0.5, delay * 2))
                log.warning("%s: write failed, retrying in %.1f s: %s", self._what, delay, exc.message)
            except Exception:
                delay = min(MAX_BACKOFF, max(0.5, delay * 2))
                log.exception("%s: write failed unexpectedly, retrying in %.1f s", self._what, delay)
            finally:
                self._writing = False

    async def stop(self) -> None:
        """Stop the background task: at once while it waits, after the write it is in the middle of (a write
        cut short can leave its outcome unknown, and SQLite's lock held until the driver's thread is done)."""
        if self._task is None:
            return
        self._stopping = True
        try:
            if not self._writing:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        finally:
            self._task = None
            self._stopping = False

    async def aclose(self) -> None:
        """Stop, then write what is pending; what cannot be written is logged as lost."""
        await self.stop()
        try:
            await self._flush()
        except StoreError as exc:
            log.error("%s: not written at shutdown, lost: %s", self._what, exc.message)
