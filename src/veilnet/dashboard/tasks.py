"""The dashboard's per-task view: for every task, the miners serving it and the validator's figures for it.

Which miners serve a task comes from the gateway's miner directory (each offer names its task); the figures
are the ones the validator stores per miner per task (``ScoreState.tasks`` and ``ScoreState.throughput``),
shown as stored. Tasks are names like any other here, so a plugin's task shows as the built-in ones do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from veilnet.dashboard.models import TaskMinerRow, TaskView
from veilnet.scoring import ScoreState

__all__ = ["task_views"]


def task_views(offered: Mapping[str, Mapping[str, Sequence[str]]], states: Mapping[str, ScoreState],
               uids: Mapping[str, int], units: Mapping[str, str]) -> list[TaskView]:
    """One view per task, by name. ``offered``: task -> miner hotkey -> models it offers for the task now;
    ``states``: the validator's score states by hotkey; ``uids``: the metagraph's uid of each hotkey;
    ``units``: each installed task's unit. A task's miners are those offering it now and those whose stored
    share of it is above 0 (still earning from it), the largest share first, then by uid."""
    holding: dict[str, set[str]] = {}
    for hotkey, state in states.items():
        for task, figures in state.tasks.items():
            if figures.share > 0:
                holding.setdefault(task, set()).add(hotkey)
    views = []
    for task in sorted(set(offered) | set(holding)):
        models = offered.get(task, {})
        rows = [_row(task, hotkey, models.get(hotkey, ()), states.get(hotkey), uids.get(hotkey))
                for hotkey in set(models) | holding.get(task, set())]
        rows.sort(key=lambda r: (-(r.share or 0.0), r.uid is None, r.uid or 0, r.hotkey))
        views.append(TaskView(task=task, unit=units.get(task), miners=rows))
    return views


def _row(task: str, hotkey: str, models: Sequence[str], state: ScoreState | None, uid: int | None) -> TaskMinerRow:
    figures = state.tasks.get(task) if state is not None else None
    return TaskMinerRow(uid=uid, hotkey=hotkey, models=sorted(set(models)),
                        quality=figures.quality if figures is not None else None,
                        throughput=state.throughput.get(task) if state is not None else None,
                        share=figures.share if figures is not None else None)
