"""Finding tasks: every entry point of the group ``veilnet.tasks`` (veilnet's own are declared in its
``pyproject.toml`` like anyone else's), loaded once per process.

An entry point names a :class:`~veilnet.tasks.interface.Task` subclass (or an instance). A broken plugin
(it does not import, or is not a Task, or takes a name already taken) is refused with a ConfigError naming
the entry point and its distribution, so a miner or validator never starts with a task silently missing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from veilnet.errors import ConfigError
from veilnet.tasks.interface import Task

__all__ = ["ENTRY_POINT_GROUP", "installed_tasks", "load_tasks", "select_tasks", "task_named"]

ENTRY_POINT_GROUP = "veilnet.tasks"


def _load(point: EntryPoint) -> Task[Any, Any]:
    where = f"entry point {point.name} = {point.value!r}" + (f" of {point.dist.name}" if point.dist else "")
    try:
        loaded = point.load()
    except Exception as exc:  # a plugin's import failure, whatever it is, names the plugin
        raise ConfigError(f"task {where} does not load: {type(exc).__name__}: {exc}") from exc
    task = loaded() if isinstance(loaded, type) and issubclass(loaded, Task) else loaded
    if not isinstance(task, Task):
        raise ConfigError(f"task {where} is not a veilnet.tasks.interface.Task")
    if task.name != point.name:
        raise ConfigError(f"task {where} calls itself {task.name!r}; the entry point's name must be its name")
    return task


def load_tasks(points: Iterable[EntryPoint]) -> dict[str, Task[Any, Any]]:
    """The tasks ``points`` name, by name (ConfigError for a broken one or a name taken twice)."""
    tasks: dict[str, Task[Any, Any]] = {}
    sources: dict[str, str] = {}
    for point in points:
        source = point.value
        if point.name in tasks:
            if sources[point.name] == source:
                continue  # the same task seen twice (an editable install listed on two paths)
            raise ConfigError(f"two installed tasks are called {point.name!r}: {sources[point.name]} and {source}")
        tasks[point.name] = _load(point)
        sources[point.name] = source
    return tasks


@functools.cache
def installed_tasks() -> dict[str, Task[Any, Any]]:
    """Every installed task by name (read once per process; ``installed_tasks.cache_clear()`` reads again)."""
    return load_tasks(entry_points(group=ENTRY_POINT_GROUP))


def task_named(name: str) -> Task[Any, Any]:
    """The installed task ``name`` (ConfigError naming the installed ones otherwise)."""
    tasks = installed_tasks()
    if name not in tasks:
        raise ConfigError(f"no installed task is called {name!r}; installed: {', '.join(sorted(tasks)) or 'none'} "
                          f"(a task package registers itself under the entry-point group {ENTRY_POINT_GROUP!r})")
    return tasks[name]


def select_tasks(names: Iterable[str]) -> dict[str, Task[Any, Any]]:
    """The installed tasks ``names`` (in that order), ConfigError for one not installed."""
    return {name: task_named(name) for name in dict.fromkeys(names)}
