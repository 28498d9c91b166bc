"""Wire models for the dashboard snapshot (pydantic only)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BreakerState",
    "DashboardSnapshot",
    "EpochPoint",
    "MetagraphRow",
    "MinerRequestStats",
    "TaskMinerRow",
    "TaskView",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetagraphRow(_Model):
    uid: int
    hotkey: str
    stake: float
    incentive: float
    dividends: float
    emission: float
    validator_permit: bool
    axon: str | None = None


class EpochPoint(_Model):
    """One miner at one epoch, from the validator's score history. ``score`` is the score as the validator
    stores it (``ScoreState.ema``; docs/scoring.md gives its scale), never rescaled; ``uid``, ``incentive``
    (share of the subnet's) and ``emission`` (TAO) are the chain's at that epoch, None where not read."""

    epoch: int
    block: int
    hotkey: str
    uid: int | None
    incentive: float | None
    emission: float | None
    score: float


class MinerRequestStats(_Model):
    uid: int
    hotkey: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


class BreakerState(_Model):
    uid: int
    hotkey: str
    state: Literal["closed", "open", "half_open"]


class TaskMinerRow(_Model):
    """One miner in one task's table: the models it offers for the task now (the gateway's miner directory)
    and the validator's stored figures for the task (``ScoreState``), each None where none is stored."""

    uid: int | None  # None: not in the metagraph the gateway holds
    hotkey: str
    models: list[str]  # offered for the task now; [] while it offers none but still holds a share of it
    quality: float | None  # last mean verified quality of its answers to the task, in [0, 1]
    throughput: float | None  # last measured units (the task's unit) per second
    share: float | None  # EMA of its share of the task's credit, in [0, 1] (the task's miners sum to <= 1)


class TaskView(_Model):
    """One task (built-in or plugin alike): the miners that serve it or hold a share of it."""

    task: str
    unit: str | None  # what the task's throughput counts (None: the task is not installed where this was built)
    miners: list[TaskMinerRow] = Field(default_factory=list)


class DashboardSnapshot(_Model):
    netuid: int
    block: int
    epoch: int
    metagraph: list[MetagraphRow] = Field(default_factory=list)
    history: list[EpochPoint] = Field(default_factory=list)
    requests: list[MinerRequestStats] = Field(default_factory=list)
    breakers: list[BreakerState] = Field(default_factory=list)
    tasks: list[TaskView] = Field(default_factory=list)  # by task name
