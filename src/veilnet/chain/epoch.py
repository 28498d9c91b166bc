"""Subtensor's epoch (Yuma Consensus), exactly, as a pure function.

CONTRACT (other modules code against this; the implementation is being written):
``run_epoch(EpochInput) -> EpochOutput``. All quantities are integers as stored on chain; arrays are
indexed by uid; weights and bonds are sparse rows ``[(uid, u16), ...]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["EpochInput", "EpochOutput", "run_epoch"]

SparseRow = list[tuple[int, int]]


@dataclass(frozen=True)
class EpochInput:
    n: int
    current_block: int
    tempo: int
    activity_cutoff: int
    last_mechanism_step_block: int
    stake: list[int]
    last_update: list[int]
    block_at_registration: list[int]
    validator_permit: list[bool]
    weights: list[SparseRow]
    bonds: list[SparseRow]
    kappa: int = 32_767
    bonds_penalty: int = 65_535
    bonds_moving_average: int = 900_000
    max_allowed_validators: int = 64
    yuma3: bool = True
    liquid_alpha: bool = False
    alpha_low: int = 45_875
    alpha_high: int = 58_982
    alpha_sigmoid_steepness: int = 1_000
    rao_emission: int = 1_000_000_000
    owner_uid: int | None = None
    stake_threshold: int = 0


@dataclass(frozen=True)
class EpochOutput:
    incentive: list[int]
    dividends: list[int]
    consensus: list[int]
    validator_trust: list[int]
    bonds: list[SparseRow]
    server_emission: list[int]
    validator_emission: list[int]
    validator_permit: list[bool]
    extra: dict[str, list[int]] = field(default_factory=dict)


def run_epoch(inputs: EpochInput) -> EpochOutput:
    raise NotImplementedError("being written")
