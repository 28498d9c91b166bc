"""Where the dashboard gets its data: a Protocol, plus an in-memory source for tests and demos."""

from __future__ import annotations

from typing import Protocol

from veilnet.dashboard.models import DashboardSnapshot

__all__ = ["DashboardSource", "StaticDashboardSource"]


class DashboardSource(Protocol):
    async def snapshot(self) -> DashboardSnapshot: ...


class StaticDashboardSource:
    """Serves a fixed snapshot; ``set`` replaces it."""

    def __init__(self, snapshot: DashboardSnapshot) -> None:
        self._snapshot = snapshot

    def set(self, snapshot: DashboardSnapshot) -> None:
        self._snapshot = snapshot

    async def snapshot(self) -> DashboardSnapshot:
        return self._snapshot
