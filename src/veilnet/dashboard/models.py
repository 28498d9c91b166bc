"""Wire models for the dashboard snapshot (pydantic only)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BreakerState", "DashboardSnapshot", "EpochPoint", "MetagraphRow", "MinerRequestStats"]


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


class DashboardSnapshot(_Model):
    netuid: int
    block: int
    epoch: int
    metagraph: list[MetagraphRow] = Field(default_factory=list)
    history: list[EpochPoint] = Field(default_factory=list)
    requests: list[MinerRequestStats] = Field(default_factory=list)
    breakers: list[BreakerState] = Field(default_factory=list)
