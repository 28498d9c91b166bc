"""The scorer's own engines for the tasks whose organic answers it compares with its own reading
(:attr:`~veilnet.tasks.interface.Task.organic_engine`: OCR, orientation): each task's miner-side handler
(:meth:`~veilnet.tasks.interface.Task.handler`), opened in the scorer's process and closed with it. A task that
cannot open its engine stops the scorer from starting, as a missing task stops a miner: it would otherwise
leave that task's organic answers unverified without a word."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from veilnet.errors import ConfigError
from veilnet.tasks.interface import HandlerTools, Task, TaskHandler

__all__ = ["organic_engines"]


@contextlib.asynccontextmanager
async def organic_engines(tasks: Mapping[str, Task[Any, Any]], data_dir: Path, *,
                          threads: int = 1) -> AsyncIterator[dict[str, TaskHandler]]:
    """The entered handlers of those of ``tasks`` (by name) that set ``organic_engine``, closed on leaving.
    One request at a time each: a scorer verifies one answer after another."""
    async with contextlib.AsyncExitStack() as stack:
        engines: dict[str, TaskHandler] = {}
        for name, task in tasks.items():
            if not task.organic_engine:
                continue
            handler = task.handler(HandlerTools(data_dir=data_dir, concurrency=1, threads=threads))
            if handler is None:
                raise ConfigError(f"task {name!r} compares organic answers with its own engine, yet gives none")
            engines[name] = await stack.enter_async_context(handler)
        yield engines
