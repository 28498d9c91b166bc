"""The /dashboard web page: metagraph, per-task view of miners and their figures, per-epoch history, request
stats and breaker states."""

from veilnet.dashboard.history import EpochHistory, epoch_points
from veilnet.dashboard.models import (
    BreakerState,
    DashboardSnapshot,
    EpochPoint,
    MetagraphRow,
    MinerRequestStats,
    TaskMinerRow,
    TaskView,
)
from veilnet.dashboard.routes import dashboard_router
from veilnet.dashboard.source import DashboardSource, StaticDashboardSource
from veilnet.dashboard.tasks import task_views

__all__ = [
    "BreakerState",
    "DashboardSnapshot",
    "DashboardSource",
    "EpochHistory",
    "EpochPoint",
    "MetagraphRow",
    "MinerRequestStats",
    "StaticDashboardSource",
    "TaskMinerRow",
    "TaskView",
    "dashboard_router",
    "epoch_points",
    "task_views",
]
