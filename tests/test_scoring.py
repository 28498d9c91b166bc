from __future__ import annotations

import pytest

from veilnet.scoring import (
    Observation,
    ScoreParams,
    ScoreState,
    tempo_components,
    update_scores,
    weights_from_scores,
)


def ok(miner: str, *, verified: bool | None = None, quality: float | None = None, ttft: float = 100,
       tps: float = 50, price: float = 0.1) -> Observation:
    return Observation(miner=miner, model="m", task="chat", outcome="ok", verified=verified, quality=quality,
                       ttft_ms=ttft, tokens_per_s=tps, completion_tokens=32, price_per_million=price)


def test_cheater_is_zeroed_and_stays_banned() -> None:
    observations = [ok("honest", verified=True, quality=1.0) for _ in range(5)]
    observations += [ok("cheat", verified=True, quality=1.0) for _ in range(4)]
    observations += [ok("cheat", verified=False, quality=0.0)]
    states = update_scores({}, observations, tempo=1)
    weights = weights_from_scores(states, tempo=1)
    assert weights["cheat"] == 0.0 and weights["honest"] == pytest.approx(1.0)
    # honest-looking answers next tempo do not lift the ban
    states = update_scores(states, [ok("cheat", verified=True, quality=1.0), ok("honest")], tempo=2)
    assert weights_from_scores(states, tempo=2)["cheat"] == 0.0
    params = ScoreParams(ban_tempos=3)
    states = update_scores({}, [ok("cheat", verified=False, quality=0.0), ok("honest")], tempo=1, params=params)
    for tempo in range(2, 6):
        states = update_scores(states, [ok("cheat"), ok("honest")], tempo=tempo, params=params)
    assert weights_from_scores(states, tempo=5, params=params)["cheat"] > 0  # the ban expired after 3 tempos


def test_unverified_answers_count_as_missing_not_zero() -> None:
    verified = update_scores({}, [ok("a", verified=True, quality=1.0), ok("b", verified=True, quality=1.0)], tempo=1)
    # next tempo a is never sampled, b is: both keep the same quality
    states = update_scores(verified, [ok("a"), ok("b", verified=True, quality=1.0)], tempo=2)
    assert states["a"].quality == states["b"].quality == 1.0
    assert states["a"].ema == pytest.approx(states["b"].ema)


def test_faster_cheaper_and_more_reliable_miners_score_higher() -> None:
    fast = update_scores({}, [ok("fast", ttft=50, tps=100), ok("slow", ttft=200, tps=25)], tempo=1)
    assert fast["fast"].ema > fast["slow"].ema
    cheap = update_scores({}, [ok("cheap", price=0.1), ok("dear", price=0.4)], tempo=1)
    assert cheap["cheap"].ema > cheap["dear"].ema
    flaky_rows = [ok("solid"), ok("solid"), ok("flaky"),
                  Observation(miner="flaky", model="m", task="chat", outcome="timeout")]
    flaky = update_scores({}, flaky_rows, tempo=1)
    assert flaky["solid"].ema > flaky["flaky"].ema


def test_never_seen_and_silent_miners() -> None:
    states = {"ghost": ScoreState()}
    assert weights_from_scores(states, tempo=1) == {"ghost": 0.0}
    states = update_scores({}, [ok("a"), ok("b")], tempo=1)
    decayed = update_scores(states, [ok("a")], tempo=2)
    assert decayed["b"].ema < states["b"].ema
    only_errors = update_scores({}, [Observation(miner="x", model="m", task="chat", outcome="error")], tempo=1)
    assert only_errors["x"].ema == 0.0


def test_sharpening_widens_the_gap() -> None:
    states = {"a": ScoreState(ema=0.8, seen=True), "b": ScoreState(ema=0.4, seen=True)}
    flat = weights_from_scores(states, tempo=1, params=ScoreParams(sharpen=1.0))
    sharp = weights_from_scores(states, tempo=1, params=ScoreParams(sharpen=3.0))
    assert flat["a"] == pytest.approx(2 / 3)
    assert sharp["a"] > flat["a"]
    assert sum(sharp.values()) == pytest.approx(1.0)


def test_attested_capacity_earns_more_and_failed_attestation_costs_reliability() -> None:
    def serve(miner: str) -> list[Observation]:
        return [Observation(miner=miner, model="m", task="chat", outcome="ok", verified=True, quality=1.0,
                            ttft_ms=100, tokens_per_s=50, completion_tokens=10, price_per_million=1.0)] * 4

    observations = [
        *serve("attested"), *serve("plain"), *serve("failing"),
        Observation(miner="attested", model="", task="attestation", outcome="ok", attested=True),
        Observation(miner="failing", model="", task="attestation", outcome="error", attested=False),
    ]
    parts = tempo_components(observations, ScoreParams())
    assert parts["attested"].attested and not parts["plain"].attested and not parts["failing"].attested
    assert parts["attested"].served == parts["plain"].served == 4  # attestation is not a served request
    assert parts["failing"].reliability == pytest.approx(4 / 5)
    states = update_scores({}, observations, tempo=1)
    assert states["attested"].ema == pytest.approx(states["plain"].ema * 1.2)
    assert states["failing"].ema < states["plain"].ema
