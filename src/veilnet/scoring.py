"""Miner scores from validator observations: a pure function, no I/O. The reasons are in docs/scoring.md.

Each tempo the validator folds that tempo's :class:`Observation`s into every miner's :class:`ScoreState`
with :func:`update_scores`; :func:`weights_from_scores` turns the states into normalised weights.

- **Quality gate.** A failed verification (a token implausible under the requested sampling, wrong claimed
  logprobs, recounted usage that differs) zeroes the miner and keeps it at zero for ``ban_tempos`` tempos:
  cheating must cost more than it can earn while the verifier samples only some answers.
- **Dropout.** Only a random sample of answers is verified. Unverified answers carry no quality signal:
  they count as missing, never as zero, so a miner is not punished for the validator's sampling.
- **Components**, each in [0, 1]: verified quality, speed (time to first token and tokens/s relative to the
  best miner this tempo), reliability (share of requests answered), volume (answers served, square-rooted
  so one large miner cannot dominate) and price efficiency (cheapest price / own price).
- **Smoothing and sharpening.** An EMA across tempos resists one lucky or unlucky tempo; a sharpening
  exponent widens the gap between good and mediocre miners. Miners never seen score 0.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

__all__ = [
    "Observation",
    "Outcome",
    "ScoreParams",
    "ScoreState",
    "TempoComponents",
    "tempo_components",
    "update_scores",
    "weights_from_scores",
]

Outcome = Literal["ok", "error", "timeout", "rate_limited"]


@dataclass(frozen=True, slots=True)
class Observation:
    miner: str
    model: str
    task: str
    outcome: Outcome
    organic: bool = False
    verified: bool | None = None  # None: not sampled for verification
    quality: float | None = None  # verified quality in [0, 1] (1 = indistinguishable from the reference)
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    completion_tokens: int = 0
    price_per_million: float = 0.0
    attested: bool | None = None  # task "attestation": whether the miner's TEE evidence verified


@dataclass(frozen=True, slots=True)
class ScoreParams:
    ema_alpha: float = 0.3
    sharpen: float = 2.0
    ban_tempos: int = 20
    weight_quality: float = 0.35
    weight_speed: float = 0.2
    weight_reliability: float = 0.25
    weight_volume: float = 0.1
    weight_price: float = 0.1
    rate_limited_penalty: float = 0.5  # a 429 within the validator's quota counts as half a failure
    attested_bonus: float = 0.2  # verified TEE attestation: attested capacity earns this much more


@dataclass(frozen=True, slots=True)
class ScoreState:
    ema: float = 0.0
    quality: float = 1.0  # last known verified quality, used while nothing is verified
    banned_until: int = -1  # tempo index until which the miner scores 0
    seen: bool = False


@dataclass(frozen=True, slots=True)
class TempoComponents:
    quality: float | None
    speed: float
    reliability: float
    volume: float
    price: float
    caught: bool
    served: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    attested: bool = False


def _ratio(value: float, best: float) -> float:
    if value <= 0 or best <= 0:
        return 0.0
    return max(0.0, min(1.0, value / best))


def tempo_components(observations: Iterable[Observation], params: ScoreParams) -> dict[str, TempoComponents]:
    """Per-miner components of one tempo's observations. Attestation challenges (task ``attestation``) count
    for reliability (a miner offering confidential serving whose evidence fails has failed a request) and
    mark the miner attested when every one of them verified; they count for nothing else."""
    by_miner: dict[str, list[Observation]] = defaultdict(list)
    attestations: dict[str, list[Observation]] = defaultdict(list)
    for obs in observations:
        (attestations if obs.task == "attestation" else by_miner)[obs.miner].append(obs)
    for miner in attestations:
        by_miner.setdefault(miner, [])
    ttft: dict[str, float] = {}
    tps: dict[str, float] = {}
    served: dict[str, int] = {}
    price: dict[str, float] = {}
    for miner, rows in by_miner.items():
        ok = [o for o in rows if o.outcome == "ok"]
        served[miner] = len(ok)
        ttfts = [o.ttft_ms for o in ok if o.ttft_ms is not None and o.ttft_ms > 0]
        rates = [o.tokens_per_s for o in ok if o.tokens_per_s is not None and o.tokens_per_s > 0]
        if ttfts:
            ttft[miner] = statistics.median(ttfts)
        if rates:
            tps[miner] = statistics.median(rates)
        prices = [o.price_per_million for o in rows if o.price_per_million > 0]
        if prices:
            price[miner] = statistics.median(prices)
    best_ttft = min(ttft.values(), default=0.0)
    best_tps = max(tps.values(), default=0.0)
    most_served = max(served.values(), default=0)
    cheapest = min(price.values(), default=0.0)

    out: dict[str, TempoComponents] = {}
    for miner, rows in by_miner.items():
        verified = [o for o in rows if o.verified is not None]
        caught = any(o.verified is False for o in verified)
        qualities = [o.quality for o in verified if o.verified and o.quality is not None]
        quality = statistics.fmean(qualities) if qualities else None
        failures = sum(
            1.0 if o.outcome in ("error", "timeout") else params.rate_limited_penalty if o.outcome == "rate_limited" else 0.0
            for o in rows
        ) + sum(1.0 for o in attestations.get(miner, []) if o.attested is not True)
        reliability = served[miner] / (served[miner] + failures) if served[miner] + failures > 0 else 0.0
        speed_parts = []
        if miner in ttft:
            speed_parts.append(_ratio(best_ttft, ttft[miner]))
        if miner in tps:
            speed_parts.append(_ratio(tps[miner], best_tps))
        speed = statistics.fmean(speed_parts) if speed_parts else 0.0
        volume = math.sqrt(served[miner] / most_served) if most_served else 0.0
        price_score = _ratio(cheapest, price[miner]) if miner in price else 1.0
        out[miner] = TempoComponents(
            quality=quality, speed=speed, reliability=reliability, volume=volume, price=price_score,
            caught=caught, served=served[miner],
            attested=bool(attestations.get(miner)) and all(o.attested is True for o in attestations[miner]),
        )
    return out


def update_scores(
    states: Mapping[str, ScoreState],
    observations: Iterable[Observation],
    tempo: int,
    params: ScoreParams = ScoreParams(),
) -> dict[str, ScoreState]:
    """Fold one tempo's observations into every miner's state (miners without observations decay)."""
    components = tempo_components(observations, params)
    updated: dict[str, ScoreState] = {}
    for miner in set(states) | set(components):
        state = states.get(miner, ScoreState())
        part = components.get(miner)
        if part is None:
            updated[miner] = replace(state, ema=(1 - params.ema_alpha) * state.ema)
            continue
        banned_until = tempo + params.ban_tempos if part.caught else state.banned_until
        quality = part.quality if part.quality is not None else state.quality
        if part.caught or tempo <= banned_until:
            raw = 0.0
            ema = 0.0  # caught cheating: the history goes too
        else:
            raw = (
                params.weight_quality * quality
                + params.weight_speed * part.speed
                + params.weight_reliability * part.reliability
                + params.weight_volume * part.volume
                + params.weight_price * part.price
            ) * part.reliability  # answering nothing earns nothing, however fast the rest was
            if part.attested:
                raw *= 1 + params.attested_bonus
            ema = params.ema_alpha * raw + (1 - params.ema_alpha) * state.ema if state.seen else raw
        updated[miner] = ScoreState(ema=ema, quality=quality, banned_until=banned_until, seen=True)
    return updated


def weights_from_scores(states: Mapping[str, ScoreState], tempo: int, params: ScoreParams = ScoreParams()) -> dict[str, float]:
    """Normalised weights: EMA scores sharpened by ``params.sharpen``; banned and unseen miners get 0."""
    raw = {
        miner: (state.ema ** params.sharpen if state.seen and tempo > state.banned_until else 0.0)
        for miner, state in states.items()
    }
    total = sum(raw.values())
    return {miner: (value / total if total > 0 else 0.0) for miner, value in raw.items()}
