"""Miner scores from validator observations: pure functions, no I/O. The reasons are in docs/scoring.md.

Each tempo the validator folds that tempo's :class:`Observation`s into every miner's :class:`ScoreState`
with :func:`update_scores`; :func:`weights_from_scores` turns the states into normalised weights.

- **Credit is measured throughput times service.** Per task, a miner's credit is the throughput the
  validator *measured* in probe rounds (every miner kept busy through the same window, what it delivered
  inside it over the window; an answer counting for what it delivered, never for what it claimed beyond what
  was asked) times ``service ** sharpen``.
  Hotkeys in front of one backend are probed together and split its throughput, so splitting earns nothing;
  advertising capacity earns nothing unless it is served.
- **Service** = quality^2 x reliability^2 x speed^0.5 x price^0.5 (exponents in :class:`ScoreParams`):
  verified quality; reliability (answers / requests, every refusal, 429, 503, timeout, probe refused, terms
  unreadable or attestation failed counting as a failure; 0 in a tempo it served nothing in); speed
  (delivered tokens per second of the whole answer and, on streams, time to first token) and price (what the
  miner charges), each relative to the *throughput-weighted median* of the miners serving the task, so a
  miner answering little or lying cannot set the reference. A price below the reference counts only as far
  as the miner answered the organic requests it drew (a price it does not honour earns nothing).
- **Task shares.** Each task's credit is normalised among its miners and weighted by the task's share
  (``task_shares``), so a task nobody else serves cannot take everything.
- **Quality gate.** A failed verification, or a series of verdicts that convicts the miner of answering
  from a greedy cache or with another model (:mod:`veilnet.tasks.series`), zeroes the miner and keeps it at
  zero for ``ban_tempos`` tempos. Unverified answers carry no quality signal: they are missing, not zero.
- **Smoothing.** An EMA of each tempo's share resists one lucky or unlucky tempo; it is linear, so k
  hotkeys' summed EMA is the EMA of their summed shares. Miners never seen score 0.
- **Per-task figures.** Each state keeps, per task, the EMA of the miner's share of the task's credit and the
  last mean verified quality of its answers to the task (:class:`TaskScore`), beside the last measured
  throughput; the task-share-weighted sum of the per-task shares is the score (the dashboard shows them).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from veilnet.tasks.series import greedy_cache_test, substitution_test
from veilnet.tasks.verdict import GreedyEvidence, Verdict

__all__ = [
    "Kind",
    "Observation",
    "Outcome",
    "ScoreParams",
    "ScoreState",
    "TaskComponents",
    "TaskScore",
    "TempoComponents",
    "observe_verdict",
    "open_windows",
    "probe_window",
    "round_rate",
    "tempo_components",
    "tempo_shares",
    "tempo_task_shares",
    "update_scores",
    "weighted_median",
    "weights_from_scores",
]

Outcome = Literal["ok", "error", "timeout", "rate_limited"]
# challenge: a synthetic request; organic: an app's request the gateway relayed; probe: one request of a
# probe round (throughput); attestation: a TEE evidence check; terms: one read of the capacity document;
# audit: a sampled organic answer the scorer verified (its verdict only: the request itself counts once, as
# kind organic, so an audit adds nothing to reliability or speed, and a failed one convicts like a challenge)
Kind = Literal["challenge", "organic", "probe", "attestation", "terms", "audit"]
_SERVING: frozenset[str] = frozenset(("challenge", "organic", "probe"))


@dataclass(frozen=True, slots=True)
class Observation:
    miner: str
    model: str
    task: str
    outcome: Outcome
    organic: bool = False  # the same as kind "organic" (kept for observations recorded before kinds)
    verified: bool | None = None  # None: not sampled for verification
    quality: float | None = None  # verified quality in [0, 1] (1 = indistinguishable from the reference)
    ttft_ms: float | None = None  # streamed answers only: until the first content token (below elapsed_ms)
    completion_tokens: int = 0  # what the miner claimed
    price_per_million: float = 0.0  # terms: what the miner charges for the task's model (USD, blended)
    attested: bool | None = None  # kind "attestation": whether the miner's TEE evidence verified
    kind: Kind = "challenge"
    elapsed_ms: float | None = None  # from sending the request to the answer's end
    max_tokens: int | None = None  # the length asked for (chat)
    units: int = 0  # what the answer delivered: completion tokens (recounted when verified, at most
    #                 max_tokens) for chat, inputs embedded for embeddings
    probe: str | None = None  # kind "probe": the round (every miner probed in it at the same moment)
    window_ms: float | None = None  # kind "probe": the round's window (every miner kept busy through it)
    in_window: float = 1.0  # kind "probe": the share of the answer's units delivered inside the window
    window_answers: int = 0  # kind "probe": how many answers its window got, every miner's (0: not known)
    greedy_hits: int = 0  # verified answers sampled at temperature > 0: argmax hits at checked positions
    greedy_bounds: tuple[float, ...] = ()  # ... and the most an honest sampler hits each of them
    fisher: float = 0.0  # verified chat answers: Fisher's statistic over the checked positions
    text_positions: int = 0

    @property
    def category(self) -> Kind:
        """The kind, reading observations recorded without one (``organic``, task ``attestation`` or
        ``terms``) too."""
        if self.task in ("attestation", "terms"):
            return self.task  # type: ignore[return-value]
        return "organic" if self.organic else self.kind

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Observation:
        """Read :meth:`to_dict`'s output (unknown keys, from an older or newer validator, are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "greedy_bounds" in values:
            values["greedy_bounds"] = tuple(float(b) for b in values["greedy_bounds"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ScoreParams:
    ema_alpha: float = 0.3
    sharpen: float = 2.0  # credit = throughput x service ** sharpen
    ban_tempos: int = 20
    exp_quality: float = 2.0
    exp_reliability: float = 2.0
    exp_speed: float = 0.5
    exp_price: float = 0.5
    task_shares: Mapping[str, float] = field(default_factory=lambda: {"chat": 0.75, "embeddings": 0.25})
    default_task_share: float = 0.25  # a task ``task_shares`` does not name (an installed plugin's)
    attested_bonus: float = 0.2  # verified TEE attestation: attested capacity earns this much more
    greedy_alpha: float = 1e-9  # series tests: an honest miner is convicted with at most this probability
    substitution_alpha: float = 1e-9


@dataclass(frozen=True, slots=True)
class TaskScore:
    """One task's part of a miner's score state."""

    share: float = 0.0  # EMA of the miner's share of the task's credit, in [0, 1] (the task's miners sum to <= 1)
    quality: float | None = None  # last mean verified quality of its answers to the task (None: none verified)

    def to_dict(self) -> dict[str, Any]:
        return {"share": self.share, "quality": self.quality}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskScore:
        quality = data.get("quality")
        return cls(share=float(data.get("share", 0.0)), quality=float(quality) if quality is not None else None)


@dataclass(frozen=True, slots=True)
class ScoreState:
    ema: float = 0.0  # smoothed share of the miners' credit (sums to at most 1 over miners)
    quality: float = 1.0  # last known verified quality, used while nothing is verified
    banned_until: int = -1  # tempo index until which the miner scores 0
    seen: bool = False
    throughput: Mapping[str, float] = field(default_factory=dict)  # task -> last measured units/s
    tasks: Mapping[str, TaskScore] = field(default_factory=dict)  # task -> its share and quality

    def to_dict(self) -> dict[str, Any]:
        return {"ema": self.ema, "quality": self.quality, "banned_until": self.banned_until, "seen": self.seen,
                "throughput": dict(self.throughput),
                "tasks": {task: figures.to_dict() for task, figures in self.tasks.items()}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScoreState:
        """Read :meth:`to_dict`'s output; a state saved before throughput or the per-task figures were kept
        reads with none (unknown keys, from a newer validator, are ignored)."""
        throughput = data.get("throughput") or {}
        tasks = data.get("tasks") or {}
        return cls(ema=float(data.get("ema", 0.0)), quality=float(data.get("quality", 1.0)),
                   banned_until=int(data.get("banned_until", -1)), seen=bool(data.get("seen", False)),
                   throughput={str(k): float(v) for k, v in throughput.items()},
                   tasks={str(k): TaskScore.from_dict(v) for k, v in tasks.items()})


@dataclass(frozen=True, slots=True)
class TaskComponents:
    throughput: float | None  # units/s measured in this tempo's probe rounds (None: not probed)
    speed: float  # in [0, 1]; 0.5 is the reference (the throughput-weighted median)
    price: float  # in [0, 1]; 0.5 is the reference, 1.0 free


@dataclass(frozen=True, slots=True)
class TempoComponents:
    quality: float | None
    reliability: float
    caught: bool
    served: int = 0
    attested: bool = False
    tasks: dict[str, TaskComponents] = field(default_factory=dict)
    convicted_by: tuple[str, ...] = ()  # failed_verification, greedy_cache, substitution
    task_quality: dict[str, float] = field(default_factory=dict)  # task -> mean verified quality of its answers
    observed_tasks: frozenset[str] = frozenset()  # tasks of its serving and terms observations this tempo


def observe_verdict(observation: Observation, verdict: Verdict) -> Observation:
    """The observation of a verified answer: its verdict, the delivered units from the reference's recount
    (at most the length asked for), and the evidence the series tests read."""
    units = observation.units
    if verdict.usage is not None:
        units = verdict.usage.completion_tokens
        if observation.max_tokens is not None:
            units = min(units, observation.max_tokens)
    greedy = verdict.greedy
    return replace(observation, verified=verdict.ok, quality=verdict.quality, units=max(0, units),
                   greedy_hits=greedy.hits if greedy is not None else 0,
                   greedy_bounds=greedy.hit_bounds if greedy is not None else (),
                   fisher=verdict.fisher, text_positions=verdict.text_positions)


def weighted_median(pairs: Iterable[tuple[float, float]]) -> float | None:
    """The value below and above which at most half the weight lies ((value, weight) pairs; weights <= 0 and
    NaN values are ignored; None when nothing is left). Between two values holding exactly half each: their mean."""
    items = sorted((v, w) for v, w in pairs if w > 0 and not math.isnan(v))
    if not items:
        return None
    half = math.fsum(w for _, w in items) / 2
    running = 0.0
    for index, (value, weight) in enumerate(items):
        running += weight
        if math.isclose(running, half, rel_tol=1e-12) and index + 1 < len(items):
            return (value + items[index + 1][0]) / 2
        if running > half:
            return value
    return items[-1][0]


def _relative(better: float, worse: float) -> float:
    """``better / (better + worse)``: 0.5 when equal, towards 1 as ``better`` dominates (0.5 when both 0)."""
    total = better + worse
    return 0.5 if total <= 0 else better / total


def round_rate(members: Sequence[Observation]) -> float:
    """Units per second one miner delivered in one probe round. A windowed round (``window_ms``): the units
    it delivered inside the window (each answer's ``in_window`` share) over the window, the same span for
    every miner, so hotkeys sharing a backend cannot together deliver more in it than the backend, however
    it orders their requests. A round recorded without a window: its answers' units over the time from its
    start to the last answer (which rewards that order: docs/scoring.md). Refused or failed requests deliver
    nothing; a failed verification nothing."""
    window = max((o.window_ms or 0.0) for o in members)
    kept = [o for o in members if o.outcome == "ok" and o.verified is not False]
    if window > 0:
        return math.fsum(max(0, o.units) * min(1.0, max(0.0, o.in_window)) for o in kept) / (window / 1000)
    seconds = max((o.elapsed_ms or 0.0) for o in members) / 1000
    delivered = sum(max(0, o.units) for o in kept)
    return delivered / seconds if seconds > 0 else 0.0


def probe_window(observation: Observation) -> tuple[str, str] | None:
    """The probe window an observation is an answer of, as (task, round id); None for any other."""
    if observation.category != "probe" or observation.probe is None:
        return None
    return observation.task, observation.probe


def open_windows(observations: Iterable[Observation]) -> frozenset[tuple[str, str]]:
    """The probe windows (:func:`probe_window`) with fewer answers among ``observations`` than they got
    (``window_answers``): the scorers have not recorded the rest yet. Folded into a tempo now, a window would
    credit each miner there with only the answers recorded before the epoch, and with the rest in the next,
    each part over the whole window."""
    counts: dict[tuple[str, str], int] = defaultdict(int)
    expected: dict[tuple[str, str], int] = {}
    for o in observations:
        window = probe_window(o)
        if window is not None:
            counts[window] += 1
            expected[window] = max(expected.get(window, 0), o.window_answers)
    return frozenset(window for window, count in counts.items() if count < expected[window])


def _throughputs(rows: list[Observation]) -> dict[str, float]:
    """Task -> mean over the tempo's probe rounds of this miner's rate in the round (:func:`round_rate`); a task
    no probe round reached this tempo has none (the score state keeps the last measured one)."""
    rounds: dict[tuple[str, str], list[Observation]] = defaultdict(list)
    for o in rows:
        if o.category == "probe" and o.probe is not None:
            rounds[(o.task, o.probe)].append(o)
    per_task: dict[str, list[float]] = defaultdict(list)
    for (task, _), members in rounds.items():
        per_task[task].append(round_rate(members))
    return {task: statistics.fmean(values) for task, values in per_task.items()}


@dataclass(frozen=True, slots=True)
class _Measures:
    """One miner's raw figures for one task in one tempo."""

    rate: float | None = None  # delivered units / seconds of whole answers (challenges and organic)
    ttft_ms: float | None = None  # median time to the first token of streamed answers that had one
    price: float | None = None  # what its capacity document charges
    honoured: float = 1.0  # share of the task's organic requests it answered (1.0 when it got none)


def _measures(rows: list[Observation], task: str) -> _Measures:
    answered = [o for o in rows if o.task == task and o.outcome == "ok" and o.category in ("challenge", "organic")
                and o.verified is not False]
    timed = [o for o in answered if o.elapsed_ms is not None and o.elapsed_ms > 0]
    seconds = math.fsum(o.elapsed_ms or 0.0 for o in timed) / 1000
    rate = sum(max(0, o.units) for o in timed) / seconds if timed else None
    # streamed answers only: a whole answer's first byte is its end, which a shorter answer would win
    ttfts = [o.ttft_ms for o in timed if o.ttft_ms is not None and 0 < o.ttft_ms < (o.elapsed_ms or 0.0)
             and o.units >= 1]
    prices = [o.price_per_million for o in rows
              if o.task == task and o.category == "terms" and o.outcome == "ok" and o.price_per_million >= 0]
    organic = [o for o in rows if o.task == task and o.category == "organic"]
    honoured = sum(1 for o in organic if o.outcome == "ok") / len(organic) if organic else 1.0
    return _Measures(rate, statistics.median(ttfts) if ttfts else None,
                     statistics.median(prices) if prices else None, honoured)


def _task_components(by_miner: Mapping[str, list[Observation]], throughput: Mapping[str, Mapping[str, float]],
                     weights: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, TaskComponents]]:
    """Miner -> task -> speed and price relative to the medians of the task's miners weighted by
    ``weights`` (throughput, measured or last known); ``throughput``: what this tempo measured."""
    tasks = {o.task for rows in by_miner.values() for o in rows if o.category in _SERVING | {"terms"}}
    out: dict[str, dict[str, TaskComponents]] = defaultdict(dict)
    for task in tasks:
        measures = {miner: _measures(rows, task) for miner, rows in by_miner.items()}
        weight = {miner: weights.get(miner, {}).get(task, 0.0) for miner in by_miner}
        ref_rate = weighted_median((m.rate, weight[k]) for k, m in measures.items() if m.rate is not None)
        ref_ttft = weighted_median((m.ttft_ms, weight[k]) for k, m in measures.items() if m.ttft_ms is not None)
        ref_price = weighted_median((m.price, weight[k]) for k, m in measures.items() if m.price is not None)
        for miner, m in measures.items():
            parts = []
            if m.rate is not None and ref_rate is not None:
                parts.append(_relative(m.rate, ref_rate))
            if m.ttft_ms is not None and ref_ttft is not None:
                parts.append(_relative(ref_ttft, m.ttft_ms))
            speed = statistics.fmean(parts) if parts else 0.5
            price = _relative(ref_price, m.price) if m.price is not None and ref_price is not None else 0.5
            if price > 0.5:  # a price below the reference counts only as far as organic requests got it
                price = 0.5 + (price - 0.5) * m.honoured
            measured = throughput.get(miner, {}).get(task)
            out[miner][task] = TaskComponents(throughput=measured, speed=speed, price=price)
    return out


def _convictions(rows: list[Observation], params: ScoreParams) -> tuple[str, ...]:
    """Why the tempo's verdicts convict the miner: a failed verification, or a series test over them."""
    verified = [o for o in rows if o.verified is not None]
    out = []
    if any(o.verified is False for o in verified):
        out.append("failed_verification")
    evidence = [GreedyEvidence(o.greedy_hits, tuple(o.greedy_bounds)) for o in verified if o.greedy_bounds]
    if evidence and greedy_cache_test(evidence, alpha=params.greedy_alpha).flagged:
        out.append("greedy_cache")
    texts = [Verdict(ok=True, quality=1.0, reason=None, checked=o.text_positions, fisher=o.fisher,
                     text_positions=o.text_positions) for o in verified if o.text_positions > 0]
    if texts and substitution_test(texts, alpha=params.substitution_alpha).flagged:
        out.append("substitution")
    return tuple(out)


def tempo_components(observations: Iterable[Observation], params: ScoreParams,
                     states: Mapping[str, ScoreState] | None = None) -> dict[str, TempoComponents]:
    """Per-miner components of one tempo's observations. Attestations count for reliability (evidence that
    fails is a failed request) and mark the miner attested when every one verified; terms reads count a
    failure when unreadable and give the price otherwise; neither counts as a request served. The references
    for speed and price are weighted by each miner's throughput: this tempo's, else the last measured
    (``states``)."""
    by_miner: dict[str, list[Observation]] = defaultdict(list)
    for obs in observations:
        by_miner[obs.miner].append(obs)
    throughput = {miner: _throughputs(rows) for miner, rows in by_miner.items()}
    known = states or {}
    weights = {miner: {**(known[miner].throughput if miner in known else {}), **measured}
               for miner, measured in throughput.items()}
    per_task = _task_components(by_miner, throughput, weights)
    out: dict[str, TempoComponents] = {}
    for miner, rows in by_miner.items():
        serving = [o for o in rows if o.category in _SERVING]
        served = sum(1 for o in serving if o.outcome == "ok")
        failures = sum(1 for o in serving if o.outcome != "ok")
        failures += sum(1 for o in rows if o.category == "terms" and o.outcome != "ok")
        attestations = [o for o in rows if o.category == "attestation"]
        failures += sum(1 for o in attestations if o.attested is not True)
        qualities = [o.quality for o in rows if o.verified and o.quality is not None]
        by_task: dict[str, list[float]] = defaultdict(list)
        for o in rows:
            if o.verified and o.quality is not None:
                by_task[o.task].append(o.quality)
        convicted = _convictions(rows, params)
        out[miner] = TempoComponents(
            quality=statistics.fmean(qualities) if qualities else None,
            reliability=served / (served + failures) if served + failures > 0 else 0.0,
            caught=bool(convicted), served=served,
            attested=bool(attestations) and all(o.attested is True for o in attestations),
            tasks=per_task.get(miner, {}), convicted_by=convicted,
            task_quality={task: statistics.fmean(values) for task, values in by_task.items()},
            observed_tasks=frozenset(o.task for o in rows if o.category in _SERVING | {"terms"}),
        )
    return out


def _service(part: TempoComponents, task: TaskComponents, quality: float, params: ScoreParams) -> float:
    """quality^2 x reliability^2 x speed^0.5 x price^0.5 (the exponents are ``params``'), in [0, 1]."""
    service: float = (max(0.0, quality) ** params.exp_quality * part.reliability ** params.exp_reliability
                      * task.speed ** params.exp_speed * task.price ** params.exp_price)
    return service


def tempo_task_shares(states: Mapping[str, ScoreState], components: Mapping[str, TempoComponents], tempo: int,
                      params: ScoreParams) -> dict[str, dict[str, float]]:
    """Miner -> task -> its share of this tempo's credit for the task, in [0, 1] (the task's miners sum to 1,
    or 0 when none earned any). Credit is throughput (this tempo's, else the last measured) x service ** sharpen
    (x (1 + attested_bonus) for a miner whose TEE attestation verified). A miner's tasks are those it earned
    credit in and those it was observed serving or offering this tempo (at 0 when it earned nothing there);
    banned and convicted miners are absent (they earn nothing anywhere)."""
    out: dict[str, dict[str, float]] = {}
    credit: dict[str, dict[str, float]] = defaultdict(dict)  # task -> miner -> credit
    for miner, part in components.items():
        state = states.get(miner, ScoreState())
        if part.caught or tempo <= state.banned_until:
            continue
        out[miner] = dict.fromkeys(part.observed_tasks, 0.0)
        quality = part.quality if part.quality is not None else state.quality
        for task, figures in part.tasks.items():
            # the last measured throughput stands in only for a task the miner still serves or offers
            kept = state.throughput.get(task, 0.0) if task in part.observed_tasks else 0.0
            measured = figures.throughput if figures.throughput is not None else kept
            value = measured * _service(part, figures, quality, params) ** params.sharpen
            if part.attested:
                value *= 1 + params.attested_bonus
            if value > 0:
                credit[task][miner] = value
    for task, by_miner in credit.items():
        total = math.fsum(by_miner.values())
        for miner, value in by_miner.items():
            out[miner][task] = value / total
    return out


def tempo_shares(states: Mapping[str, ScoreState], components: Mapping[str, TempoComponents], tempo: int,
                 params: ScoreParams) -> dict[str, float]:
    """Each miner's share of this tempo's credit: per task, its share of the task's credit
    (:func:`tempo_task_shares`) weighted by the task's share. Banned and convicted miners get 0. Linear in
    throughput: k hotkeys splitting one backend's throughput split its share."""
    return _weighted(tempo_task_shares(states, components, tempo, params), params)


def _weighted(task_shares: Mapping[str, Mapping[str, float]], params: ScoreParams) -> dict[str, float]:
    """Miner -> the sum over its tasks of the task's share (``params.task_shares``) x its share of the task;
    miners whose sum is 0 are left out."""
    out = {miner: math.fsum(_task_share(params, task) * share for task, share in tasks.items())
           for miner, tasks in task_shares.items()}
    return {miner: share for miner, share in out.items() if share > 0}


def _task_share(params: ScoreParams, task: str) -> float:
    return params.task_shares.get(task, params.default_task_share)


def update_scores(
    states: Mapping[str, ScoreState],
    observations: Iterable[Observation],
    tempo: int,
    params: ScoreParams = ScoreParams(),
) -> dict[str, ScoreState]:
    """Fold one tempo's observations into every miner's state (miners without observations decay). The score
    and each task's share are EMAs of the same tempo's shares, so the score is the task-share-weighted sum of
    the per-task shares (for states that kept them from the start)."""
    components = tempo_components(observations, params, states)
    task_shares = tempo_task_shares(states, components, tempo, params)
    shares = _weighted(task_shares, params)
    updated: dict[str, ScoreState] = {}
    for miner in set(states) | set(components):
        state = states.get(miner, ScoreState())
        part = components.get(miner)
        if part is None:
            updated[miner] = replace(state, ema=(1 - params.ema_alpha) * state.ema,
                                     tasks=_fold_tasks(state, {}, {}, params.ema_alpha))
            continue
        banned_until = tempo + params.ban_tempos if part.caught else state.banned_until
        quality = part.quality if part.quality is not None else state.quality
        throughput = {**state.throughput, **{task: figures.throughput for task, figures in part.tasks.items()
                                             if figures.throughput is not None}}
        if part.caught or tempo <= banned_until:
            ema = 0.0  # caught cheating: the history goes too
            tasks = _fold_tasks(state, {}, part.task_quality, 1.0)
        else:
            share = shares.get(miner, 0.0)
            alpha = params.ema_alpha if state.seen else 1.0  # the first tempo's share is the score
            ema = alpha * share + (1 - alpha) * state.ema
            tasks = _fold_tasks(state, task_shares.get(miner, {}), part.task_quality, alpha)
        updated[miner] = ScoreState(ema=ema, quality=quality, banned_until=banned_until, seen=True,
                                    throughput=throughput, tasks=tasks)
    return updated


def _fold_tasks(state: ScoreState, shares: Mapping[str, float], quality: Mapping[str, float],
                alpha: float) -> dict[str, TaskScore]:
    """The state's per-task figures after one tempo: each share an EMA (``alpha``) of the tempo's share (0 for a
    task it earned nothing in), each quality the tempo's where answers to the task were verified, else the last."""
    out: dict[str, TaskScore] = {}
    for task in sorted(set(state.tasks) | set(shares) | set(quality)):
        last = state.tasks.get(task, TaskScore())
        out[task] = TaskScore(share=alpha * shares.get(task, 0.0) + (1 - alpha) * last.share,
                              quality=quality.get(task, last.quality))
    return out


def weights_from_scores(states: Mapping[str, ScoreState], tempo: int, params: ScoreParams = ScoreParams()) -> dict[str, float]:
    """Normalised weights: EMA shares (already sharpened through service, so linear here: splitting a
    miner's share among hotkeys cannot raise its total); banned and unseen miners get 0."""
    raw = {miner: (state.ema if state.seen and tempo > state.banned_until else 0.0) for miner, state in states.items()}
    total = math.fsum(raw.values())
    return {miner: (value / total if total > 0 else 0.0) for miner, value in raw.items()}
