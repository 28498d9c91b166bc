"""The scorer's own engines for the tasks whose organic answers it compares with its own reading
(:attr:`~veilnet.tasks.interface.Task.organic_engine`: OCR, orientation): each task's miner-side handler
(:meth:`~veilnet.tasks.interface.Task.handler`), opened in the scorer's process the first time an organic answer
of that task comes to be verified (a subnet whose apps never send one loads none) and closed with the scorer.
A task that gives no engine is a :class:`~veilnet.errors.ConfigError` at the first answer: that answer stays
unverified and the scorer logs why."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from veilnet.errors import ConfigError
from veilnet.tasks.interface import HandlerTools, Task, TaskHandler

__all__ = ["OrganicEngines"]


class OrganicEngines:
    """The scorer's engines for those of ``tasks`` (by name) that set ``organic_engine``, each opened on first
    use (one request at a time: a scorer verifies one answer after another) and closed on leaving."""

    def __init__(self, tasks: Mapping[str, Task[Any, Any]], data_dir: Path, *, threads: int = 1) -> None:
        self._tasks = {name: task for name, task in tasks.items() if task.organic_engine}
        self._data_dir = data_dir
        self._threads = threads
        self._opened: dict[str, TaskHandler] = {}
        self._lock = asyncio.Lock()
        self._stack = contextlib.AsyncExitStack()

    @property
    def tasks(self) -> frozenset[str]:
        """The tasks it can open an engine for."""
        return frozenset(self._tasks)

    async def __aenter__(self) -> OrganicEngines:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._stack.aclose()
        self._opened.clear()

    async def engine_for(self, task: str) -> TaskHandler | None:
        """The entered engine serving ``task`` (None: not one of its tasks)."""
        kind = self._tasks.get(task)
        if kind is None:
            return None
        async with self._lock:
            if task not in self._opened:
                handler = kind.handler(HandlerTools(data_dir=self._data_dir, concurrency=1, threads=self._threads))
                if handler is None:
                    raise ConfigError(f"task {task!r} compares organic answers with its own engine, yet gives none")
                self._opened[task] = await self._stack.enter_async_context(handler)
            return self._opened[task]
