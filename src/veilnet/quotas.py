"""Stake-proportional request quotas, shared by the miner (enforces) and the validator (plans within).

Each permitted validator gets ``floor(C_m * s_v / sum(s))`` requests per window, where ``C_m`` is the miner's
declared capacity and ``s`` the stakes of the validators allowed to call it. The miner enforces that ONE quota
for everything a validator sends it: it cannot tell (and is not told) which requests are challenges. The
validator keeps its own synthetic traffic within its share: organic requests (its gateway's) come first,
synthetic ones use at most ``synthetic_share`` of the quota and never what organic traffic already used
(:func:`synthetic_budget`). Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from veilnet.chain.types import NeuronInfo

__all__ = ["Quota", "quota_for", "quota_table", "synthetic_budget", "validator_stakes"]


@dataclass(frozen=True, slots=True)
class Quota:
    total: int  # requests per window, organic and synthetic together


def quota_table(capacity: int, stakes: Mapping[str, int]) -> dict[str, Quota]:
    """Every validator's quota for one window. Validators with no stake get nothing."""
    if capacity < 0:
        raise ValueError("capacity must be >= 0")
    total_stake = sum(s for s in stakes.values() if s > 0)
    return {hotkey: Quota(capacity * stake // total_stake if stake > 0 and total_stake > 0 else 0)
            for hotkey, stake in stakes.items()}


def quota_for(capacity: int, stakes: Mapping[str, int], hotkey: str) -> Quota:
    """One validator's quota (zero when it is not among ``stakes``)."""
    return quota_table(capacity, stakes).get(hotkey, Quota(0))


def validator_stakes(neurons: Iterable[NeuronInfo], min_stake: int | None = None) -> dict[str, int]:
    """The callers a miner shares its capacity among: validators with a permit (or at least ``min_stake``)."""
    return {
        n.hotkey: n.stake
        for n in neurons
        if n.validator_permit or (min_stake is not None and n.stake >= min_stake)
    }


def synthetic_budget(quota: Quota, organic_used: int, synthetic_used: int, *, synthetic_share: float = 1.0,
                     cap: int | None = None) -> int:
    """How many more synthetic requests a validator may send a miner this window: organic traffic uses the
    quota first, synthetic requests fill what is left, never past ``synthetic_share`` of the quota (the
    validator's own setting) nor ``cap``."""
    if not 0.0 <= synthetic_share <= 1.0:
        raise ValueError("synthetic_share must be within [0, 1]")
    room = min(int(quota.total * synthetic_share) - synthetic_used, quota.total - organic_used - synthetic_used)
    if cap is not None:
        room = min(room, cap - synthetic_used)
    return max(0, room)
