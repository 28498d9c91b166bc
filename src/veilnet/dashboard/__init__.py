"""The /dashboard web page: metagraph, per-epoch history, request stats and breaker states."""

from veilnet.dashboard.history import EpochHistory, epoch_points
from veilnet.dashboard.models import (
    BreakerState,
    DashboardSnapshot,
    EpochPoint,
    MetagraphRow,
    MinerRequestStats,
)
from veilnet.dashboard.routes import dashboard_router
from veilnet.dashboard.source import DashboardSource, StaticDashboardSource

__all__ = [
    "BreakerState",
    "DashboardSnapshot",
    "DashboardSource",
    "EpochHistory",
    "EpochPoint",
    "MetagraphRow",
    "MinerRequestStats",
    "StaticDashboardSource",
    "dashboard_router",
    "epoch_points",
]
