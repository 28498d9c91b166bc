"""Miners' true performance over time: the world that validators measure in the simulator.

A :class:`MarketTrajectory` is plain data: every miner's true performance in every tempo (0 while it is
down) and the tempo it registers in. Any callable ``(tempos, rng) -> MarketTrajectory`` is a market model
(:data:`MarketModel`); :class:`DriftingMarket` is the default, with the processes a real inference market
shows:

- **capacity drift**: each miner's capacity is a geometric random walk (hardware, load and pricing change);
- **service jitter**: a fresh per-tempo factor common to every validator's view (a busy tempo, a slow
  upstream): what the miner really delivered in that tempo, not measurement error;
- **outages**: a running miner goes down with probability ``outage_rate`` per tempo and stays down for a
  geometric number of tempos with mean ``outage_tempos``;
- **arrivals**: ``initial`` miners exist from the start; the others register at uniformly drawn tempos.

Measurement noise is not here: each validator adds its own (:mod:`veilnet.sim.validators`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from veilnet.errors import ConfigError

__all__ = ["DriftingMarket", "MarketModel", "MarketTrajectory", "steady_market"]


@dataclass(frozen=True)
class MarketTrajectory:
    """``performance[t, i]``: miner i's true performance in tempo t (>= 0; 0 while down or not registered).
    ``arrival[i]``: the tempo miner i registers in (0: from the start)."""

    performance: NDArray[np.float64]
    arrival: NDArray[np.int64]

    def __post_init__(self) -> None:
        if self.performance.ndim != 2 or self.arrival.shape != (self.performance.shape[1],):
            raise ConfigError("performance must be (tempos, miners) and arrival (miners,)")
        if (self.performance < 0).any() or not np.isfinite(self.performance).all():
            raise ConfigError("performance must be finite and non-negative")

    @property
    def tempos(self) -> int:
        return int(self.performance.shape[0])

    @property
    def miners(self) -> int:
        return int(self.performance.shape[1])


MarketModel = Callable[[int, np.random.Generator], MarketTrajectory]


@dataclass(frozen=True)
class DriftingMarket:
    """The default market model (see the module docstring); every rate is per tempo."""

    miners: int = 16
    initial: int | None = None  # miners present from the start (None: all of them)
    capacity_spread: float = 0.5  # log-normal sigma of the miners' initial capacities
    drift: float = 0.05  # log-normal sigma of each tempo's capacity step
    jitter: float = 0.0  # log-normal sigma of the per-tempo service factor
    outage_rate: float = 0.02
    outage_tempos: float = 3.0

    def __call__(self, tempos: int, rng: np.random.Generator) -> MarketTrajectory:
        initial = self.miners if self.initial is None else self.initial
        if not 0 <= initial <= self.miners or tempos < 1:
            raise ConfigError(f"need 0 <= initial <= miners and tempos >= 1 (got {initial}, {self.miners}, {tempos})")
        steps = rng.normal(0.0, self.drift, size=(tempos, self.miners))
        steps[0] = rng.normal(0.0, self.capacity_spread, size=self.miners)
        capacity = np.exp(np.cumsum(steps, axis=0))
        service = np.exp(rng.normal(0.0, self.jitter, size=(tempos, self.miners))) if self.jitter > 0 else 1.0
        up = self._availability(tempos, rng)
        arrival = np.zeros(self.miners, dtype=np.int64)
        late = self.miners - initial
        if late:
            arrival[initial:] = rng.integers(1, max(2, tempos), size=late)
        registered = np.arange(tempos)[:, None] >= arrival[None, :]
        return MarketTrajectory(performance=capacity * service * up * registered, arrival=arrival)

    def _availability(self, tempos: int, rng: np.random.Generator) -> NDArray[np.float64]:
        up = np.ones((tempos, self.miners))
        if self.outage_rate <= 0:
            return up
        recover = 1.0 / max(self.outage_tempos, 1.0)
        down = np.zeros(self.miners, dtype=np.bool_)
        draws = rng.random((tempos, self.miners))
        for t in range(tempos):
            down = np.where(down, draws[t] >= recover, draws[t] < self.outage_rate)
            up[t] = ~down
        return up


def steady_market(performance: list[float], tempos: int) -> MarketTrajectory:
    """Fixed performances from the start: the world in which nothing a copier sees is ever out of date."""
    row = np.array(performance, dtype=np.float64)
    return MarketTrajectory(performance=np.tile(row, (tempos, 1)), arrival=np.zeros(len(row), dtype=np.int64))
