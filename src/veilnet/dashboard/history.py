"""The dashboard's per-epoch history, read from the validator's score history in SQL (:mod:`veilnet.store.history`).

The weights role writes one row per miner per tempo, so the history is there from the first epoch on,
whoever has the page open and however often the gateway restarted.
"""

from __future__ import annotations

from collections.abc import Iterable

from veilnet.dashboard.models import EpochPoint
from veilnet.store.history import ScoreHistory, ScorePoint

__all__ = ["EpochHistory", "epoch_points"]


def epoch_points(points: Iterable[ScorePoint]) -> list[EpochPoint]:
    """Score history rows as the dashboard's points (the score exactly as stored)."""
    return [
        EpochPoint(epoch=p.tempo, block=p.block, uid=p.uid, hotkey=p.miner, score=p.score, incentive=p.incentive,
                   emission=p.emission)
        for p in points
    ]


class EpochHistory:
    """The newest ``tempos`` tempos of one validator's score history; call it for the points."""

    def __init__(self, history: ScoreHistory, *, tempos: int = 100) -> None:
        self._history = history
        self._tempos = tempos

    async def __call__(self) -> list[EpochPoint]:
        return epoch_points(await self._history.recent_tempos(self._tempos))
