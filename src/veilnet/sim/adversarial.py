"""The adversarial market: miners with named strategies, scored by the REAL scoring over the exact epoch.

Each tempo every scoring validator observes every miner hotkey as the real validator and gateway do, and
folds the observations with :func:`veilnet.scoring.update_scores`; :func:`veilnet.scoring.weights_from_scores`
gives its weights, which it commits (commit-reveal, period 1) to the subnet model of :mod:`veilnet.sim.chain`,
whose epochs are :func:`veilnet.chain.epoch.run_epoch`. Per hotkey and tempo a validator sees:

- **terms**: one read of the capacity document (its price);
- **challenges** (``challenges`` of them), each verified: the task bench's real verdict
  (:mod:`veilnet.sim.answers`) on the strategy's challenge behaviour;
- **organic** answers the gateway routed to it (the gateway routes by advertised capacity and price, so a
  liar draws ``liar_draw`` times the traffic), a share ``organic_verify_rate`` of them verified; a miner
  that refuses organic work answers 429;
- **one probe round**: ``probe_requests`` workers keep every hotkey busy through the same ``probe_window``
  seconds, and each hotkey delivers its part of its backend's throughput in it (hotkeys sharing one backend
  split it evenly, or, served in turn, the first takes it all); for tasks other than chat and embeddings the
  validator's pools of drawn challenges are taken to have grown to what the miners deliver (two rounds or
  more after the first, see :mod:`veilnet.validator.probe`). A share ``probe_verify_rate`` of probe
  answers is verified (recounted), the rest count what the miner claims.

Miner strategies (:data:`STRATEGIES`): honest; empty, truncate, cache, substitute, inflate-usage (that
answer on every request); selective (honest on challenges and probes, canned empty answers to organic
traffic); capacity-liar and price-liar (advertise a huge capacity or price 0, so the gateway routes them more,
and refuse organic work with 429); sybil-k (k hotkeys in front of one honest backend sharing itself among them);
sybil-turn-k (the same, the backend serving the hotkeys in turn). ``copier-validator``
is a validator strategy: a validator that commits the largest honest validator's public weights.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from veilnet.chain.epoch import SparseRow
from veilnet.chain.weights import scores_to_u16_weights
from veilnet.errors import ConfigError
from veilnet.scoring import (
    Observation,
    ScoreParams,
    ScoreState,
    observe_verdict,
    update_scores,
    weights_from_scores,
)
from veilnet.sim.answers import Behaviour, TaskBench, bench_for
from veilnet.sim.chain import SubnetParams
from veilnet.sim.driver import SimResult, ValidatorSpec, simulate
from veilnet.sim.market import steady_market
from veilnet.sim.metrics import dividend_ratio
from veilnet.sim.validators import CopierValidator, ValidatorView

__all__ = [
    "COPIER",
    "STRATEGIES",
    "MarketConfig",
    "MarketOutcome",
    "MinerStrategy",
    "ScoringValidator",
    "World",
    "applicable",
    "run_market",
    "strategies_for",
    "strategy_named",
]

COPIER = "copier-validator"


@dataclass(frozen=True)
class MinerStrategy:
    name: str
    challenge: Behaviour = "honest"  # what it sends for challenges and probes
    organic: Behaviour = "honest"  # what it sends for organic requests
    refuses_organic: bool = False
    liar: bool = False  # advertises capacity or price it does not honour (draws more organic traffic)
    price: float = 1.0  # what its capacity document charges (USD per million units)
    sybil: int = 1  # hotkeys in front of one backend
    in_turn: bool = False  # the backend serves its hotkeys in turn (else shares itself evenly among them)


def _same(name: str, behaviour: Behaviour) -> MinerStrategy:
    return MinerStrategy(name, challenge=behaviour, organic=behaviour)


STRATEGIES: dict[str, MinerStrategy] = {
    "honest": MinerStrategy("honest"),
    "empty": _same("empty", "empty"),
    "truncate": _same("truncate", "truncate"),
    "cache": _same("cache", "cache"),
    "substitute": _same("substitute", "substitute"),
    "inflate-usage": _same("inflate-usage", "inflate-usage"),
    "selective": MinerStrategy("selective", organic="empty"),
    "capacity-liar": MinerStrategy("capacity-liar", refuses_organic=True, liar=True),
    "price-liar": MinerStrategy("price-liar", refuses_organic=True, liar=True, price=0.0),
}
_SYBIL = re.compile(r"sybil-(turn-)?(\d+)")


def strategy_named(name: str) -> MinerStrategy:
    """A strategy of :data:`STRATEGIES`, or ``sybil-k`` / ``sybil-turn-k`` (k >= 2); ConfigError naming the known
    ones."""
    if name in STRATEGIES:
        return STRATEGIES[name]
    match = _SYBIL.fullmatch(name)
    if match and int(match.group(2)) >= 2:
        return MinerStrategy(name, sybil=int(match.group(2)), in_turn=match.group(1) is not None)
    raise ConfigError(f"unknown strategy {name!r}; known: {', '.join([*STRATEGIES, 'sybil-k', 'sybil-turn-k', COPIER])}")


def applicable(task: str) -> list[str]:
    """The miner strategies that apply to ``task`` (those whose behaviours its bench covers), sybil-3 and
    sybil-turn-3."""
    behaviours = set(bench_for(task).behaviours)
    names = [name for name, s in STRATEGIES.items() if {s.challenge, s.organic} <= behaviours and name != "honest"]
    return [*names, "sybil-3", "sybil-turn-3"]


@dataclass(frozen=True)
class MarketConfig:
    task: str = "chat"
    miners: int = 10  # hotkeys
    cheaters: float = 0.3  # share of the hotkeys run by the cheating strategy
    epochs: int = 10
    seed: int = 0
    validators: int = 2  # honest scoring validators (stakes 1000, 1300, ... TAO)
    copier: bool = False  # add a copier validator (stake of the smallest honest one)
    challenges: int = 3
    organic: float = 4.0  # organic requests per hotkey per tempo (before routing; see docs/incentives.md)
    organic_verify_rate: float = 0.25
    probe_requests: int = 4
    probe_window: float = 10.0  # seconds
    probe_verify_rate: float = 0.25
    liar_draw: float = 3.0
    throughput: float = 40.0  # an honest backend's units/s (chat tokens; images for image tasks: /10)
    throughput_spread: float = 0.2  # log-normal sigma across backends

    def __post_init__(self) -> None:
        if self.miners < 2:
            raise ConfigError(f"miners must be at least 2, got {self.miners}")
        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        if not 0 <= self.cheaters < 1:
            raise ConfigError(f"cheaters is a share of the miners: 0 <= cheaters < 1, got {self.cheaters}")
        if self.validators < 1 or self.challenges < 0 or self.probe_requests < 1:
            raise ConfigError("need validators >= 1, challenges >= 0 and probe_requests >= 1")


@dataclass
class _Hotkey:
    strategy: MinerStrategy
    backend: int
    label: str  # the strategy it is counted under (in a counterfactual run: the cheat it stands in for)
    memory: dict[str, object] = field(default_factory=dict)


@dataclass
class World:
    """The miners' side of the market: hotkeys, their strategies and backends, and the task bench."""

    config: MarketConfig
    hotkeys: list[_Hotkey]
    throughput: NDArray[np.float64]  # by backend
    bench: TaskBench
    params: ScoreParams

    @classmethod
    def build(cls, config: MarketConfig, cheat: MinerStrategy, *, counterfactual: bool = False) -> World:
        """The market; ``counterfactual``: each cheating backend served instead by one honest hotkey (what the
        cheaters' hardware would earn serving honestly)."""
        rng = np.random.default_rng(config.seed)
        cheaters = max(1, round(config.miners * config.cheaters)) if config.cheaters > 0 else 0
        hotkeys: list[_Hotkey] = []
        backend = -1
        for index in range(config.miners):
            cheating = index >= config.miners - cheaters
            strategy = cheat if cheating else STRATEGIES["honest"]
            position = index - (config.miners - cheaters)
            if not cheating or position % strategy.sybil == 0:
                backend += 1  # a new backend (a sybil's further hotkeys share the one before)
            elif counterfactual:
                continue
            hotkeys.append(_Hotkey(STRATEGIES["honest"] if counterfactual else strategy, backend, strategy.name))
        base = config.throughput / (1 if config.task == "chat" else 10)
        throughput = base * np.exp(rng.normal(0.0, config.throughput_spread, size=backend + 1))
        params = ScoreParams(task_shares={config.task: 1.0})
        return cls(config, hotkeys, throughput, bench_for(config.task, seed=config.seed), params)

    def shares(self, hotkey: int) -> int:
        return sum(h.backend == self.hotkeys[hotkey].backend for h in self.hotkeys)

    def position(self, hotkey: int) -> int:
        """1 for the first hotkey on its backend, 2 for the second, ..."""
        return sum(h.backend == self.hotkeys[hotkey].backend for h in self.hotkeys[:hotkey + 1])

    def observations(self, tempo: int, rng: random.Random) -> list[Observation]:
        """One validator's observations of every hotkey in one tempo."""
        config = self.config
        weights = [config.liar_draw if h.strategy.liar else 1.0 for h in self.hotkeys]
        total_organic = config.organic * len(self.hotkeys)
        out: list[Observation] = []
        for index, hotkey in enumerate(self.hotkeys):
            miner = f"hk{index}"
            out.append(Observation(miner, "m", self.config.task, "ok", kind="terms",
                                   price_per_million=hotkey.strategy.price))
            for _ in range(config.challenges):
                out.append(self._answered(miner, index, hotkey.strategy.challenge, "challenge", rng))
            organic = rng.random() < (total_organic * weights[index] / sum(weights)) % 1
            for _ in range(int(total_organic * weights[index] / sum(weights)) + organic):
                if hotkey.strategy.refuses_organic:
                    out.append(Observation(miner, "m", config.task, "rate_limited", kind="organic", organic=True))
                elif rng.random() < config.organic_verify_rate:
                    out.append(self._answered(miner, index, hotkey.strategy.organic, "organic", rng))
                else:
                    out.append(self._unverified(miner, index, hotkey.strategy.organic, "organic"))
            out.extend(self._probe(miner, index, f"{tempo}", rng))
        return out

    def _claim(self, behaviour: Behaviour) -> float:
        """Units an unverified answer counts: what the miner claims where units are claims (chat tokens),
        else what the request fixed."""
        return _CLAIM[behaviour] if self.bench.claims_units else _DELIVERS[behaviour]

    def _answered(self, miner: str, index: int, behaviour: Behaviour, kind: str, rng: random.Random) -> Observation:
        answered = self.bench.answer(behaviour, rng, self.hotkeys[index].memory)
        units = answered.verdict.usage.completion_tokens if answered.verdict.usage is not None else answered.claimed_units
        seconds = max(units, 1) / float(self.throughput[self.hotkeys[index].backend]) + 0.2
        base = Observation(miner, "m", self.config.task, "ok", kind=kind, organic=kind == "organic",  # type: ignore[arg-type]
                           elapsed_ms=1000 * seconds, completion_tokens=answered.claimed_units,
                           units=answered.claimed_units)
        return observe_verdict(base, answered.verdict)

    def _unverified(self, miner: str, index: int, behaviour: Behaviour, kind: str) -> Observation:
        claimed = self.bench.probe_units * self._claim(behaviour)
        seconds = self.bench.probe_units * _DELIVERS[behaviour] / float(self.throughput[self.hotkeys[index].backend]) + 0.2
        return Observation(miner, "m", self.config.task, "ok", kind=kind, organic=kind == "organic",  # type: ignore[arg-type]
                           elapsed_ms=1000 * seconds, completion_tokens=round(claimed), units=round(claimed))

    def _probe(self, miner: str, index: int, round_id: str, rng: random.Random) -> list[Observation]:
        """The hotkey's part of one probe round: ``probe_requests`` observations, each a worker's part."""
        config = self.config
        hotkey = self.hotkeys[index]
        behaviour = hotkey.strategy.challenge
        rate = float(self.throughput[hotkey.backend])
        shares, position = self.shares(index), self.position(index)
        # each worker's part of what the hotkey delivers in the window
        part = rate * (position == 1 if hotkey.strategy.in_turn else 1 / shares) * config.probe_window
        units, seconds, window = part / config.probe_requests, config.probe_window, config.probe_window * 1000
        out = []
        for _ in range(config.probe_requests):
            if rng.random() < config.probe_verify_rate:
                verified = self._answered(miner, index, behaviour, "probe", rng)
                whole, share = _in_window(units * _DELIVERS[behaviour] if verified.verified else 0.0)
                out.append(replace(verified, probe=round_id, units=whole, in_window=share, elapsed_ms=1000 * seconds,
                                   window_ms=window))
            else:
                whole, share = _in_window(units * self._claim(behaviour))
                out.append(Observation(miner, "m", config.task, "ok", kind="probe", probe=round_id,
                                       elapsed_ms=1000 * seconds, window_ms=window, units=whole, in_window=share,
                                       completion_tokens=whole))
        return out


def _in_window(units: float) -> tuple[int, float]:
    """A worker's fractional part of a window as an answer's whole units and the share of them inside the window
    (a few images a worker: rounding them would move a hotkey's measure by up to a sixth)."""
    whole = math.ceil(units)
    return whole, units / whole if whole else 1.0


# what one answer of each behaviour delivers, and what its miner claims, as a multiple of an honest answer
_DELIVERS: dict[Behaviour, float] = {"honest": 1.0, "empty": 0.0, "truncate": 0.05, "cache": 1.0, "substitute": 1.0,
                                     "inflate-usage": 1.0}
_CLAIM: dict[Behaviour, float] = {"honest": 1.0, "empty": 0.0, "truncate": 0.05, "cache": 1.0, "substitute": 1.0,
                                  "inflate-usage": 10.0}


@dataclass
class ScoringValidator:
    """A validator running the real scoring: observations -> update_scores -> weights_from_scores -> u16."""

    world: World
    seed: int
    states: dict[str, ScoreState] = field(default_factory=dict)

    def weights(self, view: ValidatorView) -> SparseRow | None:
        rng = random.Random(f"{self.seed}:{view.tempo}")
        self.states = update_scores(self.states, self.world.observations(view.tempo, rng), view.tempo,
                                    self.world.params)
        weights = weights_from_scores(self.states, view.tempo, self.world.params)
        uids = sorted(view.performance)
        by_uid = {uids[int(miner[2:])]: value for miner, value in weights.items()}
        found, values = scores_to_u16_weights(by_uid)
        return list(zip(found, values, strict=True)) or None


@dataclass(frozen=True)
class MarketOutcome:
    """Per epoch, each strategy's share of the miners' emission (``shares[strategy][epoch]``), what it would
    earn serving honestly (``fair``), and the copier's
    dividends per unit stake over the honest validators' mean (None without a copier)."""

    config: MarketConfig
    strategy: str
    shares: dict[str, list[float]]
    fair: dict[str, float]  # final-epoch shares of the counterfactual run: each cheating backend one honest hotkey
    copier_ratio: float | None
    result: SimResult

    def final(self, name: str) -> float:
        return self.shares[name][-1]


def _miner_shares(result: SimResult, world: World, cheat: str) -> dict[str, list[float]]:
    emission = result.server_emission[:, result.miner_uids].astype(np.float64)
    totals = emission.sum(axis=1)
    out: dict[str, list[float]] = {}
    for name in dict.fromkeys(["honest", cheat]):
        columns = [i for i, h in enumerate(world.hotkeys) if h.label == name]
        part = emission[:, columns].sum(axis=1)
        out[name] = [float(p / t) if t > 0 else 0.0 for p, t in zip(part, totals, strict=True)]
    return out


def _run(config: MarketConfig, world: World, copier: bool) -> SimResult:
    specs = [ValidatorSpec(f"validator-{v}", (1000 + 300 * v) * 10**9, ScoringValidator(world, config.seed * 97 + v),
                           offset=2 + v) for v in range(config.validators)]
    if copier:
        specs.append(ValidatorSpec(COPIER, 1000 * 10**9, CopierValidator(), offset=2 + config.validators))
    market = steady_market([1.0] * len(world.hotkeys), config.epochs)
    return simulate(SubnetParams(tempo=360, restake=False), specs, market, seed=config.seed)


def run_market(config: MarketConfig, strategy: str) -> MarketOutcome:
    """Run ``config.epochs`` epochs of honest miners beside ``strategy``'s hotkeys (or, for
    ``copier-validator``, honest miners only and a copier validator), and the counterfactual market in which
    every cheating backend serves honestly as one hotkey."""
    copier = config.copier or strategy == COPIER
    cheat = STRATEGIES["honest"] if strategy == COPIER else strategy_named(strategy)
    if strategy == COPIER:
        config = replace(config, cheaters=0.0)
    world = World.build(config, cheat)
    result = _run(config, world, copier)
    ratio = None
    if copier:
        honest = [name for name in result.validator_uids if name != COPIER]
        ratio = dividend_ratio(result, COPIER, honest, warmup=min(3, config.epochs - 1))
    shares = _miner_shares(result, world, cheat.name)
    if cheat.name == "honest":
        fair = {name: values[-1] for name, values in shares.items()}
    else:
        baseline = World.build(config, cheat, counterfactual=True)
        fair = {name: values[-1] for name, values in _miner_shares(_run(config, baseline, False), baseline,
                                                                   cheat.name).items()}
    return MarketOutcome(config, strategy, shares, fair, ratio, result)


def strategies_for(names: Sequence[str], task: str) -> list[str]:
    """``names``, or every strategy applicable to ``task`` (and the copier validator) when empty."""
    return list(names) if names else [*applicable(task), COPIER]
