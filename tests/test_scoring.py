"""Scoring: measured throughput x service, robust references, task shares, the quality gate, and what the
cheats of issue 19 earn against honest miners in a market model (each miner a backend: probe rounds split a
backend's throughput among the hotkeys in front of it, challenges see its unloaded speed)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from veilnet.scoring import (
    Observation,
    ScoreParams,
    ScoreState,
    TaskScore,
    open_windows,
    tempo_components,
    tempo_task_shares,
    update_scores,
    weighted_median,
    weights_from_scores,
)

LENGTH = 128  # the length the validator asks for


def ok(miner: str, *, verified: bool | None = None, quality: float | None = None, elapsed: float = 2.0,
       units: int = LENGTH, ttft: float | None = 100, task: str = "chat") -> Observation:
    return Observation(miner=miner, model="m", task=task, outcome="ok", verified=verified, quality=quality,
                       ttft_ms=ttft, elapsed_ms=elapsed * 1000, units=units, completion_tokens=units,
                       max_tokens=LENGTH)


def probe(miner: str, round_id: str, *, served: int, refused: int = 0, seconds: float = 4.0,
          units: int = LENGTH, task: str = "chat") -> list[Observation]:
    rows = [Observation(miner=miner, model="m", task=task, outcome="ok", kind="probe", probe=round_id,
                        elapsed_ms=seconds * 1000, units=units, max_tokens=LENGTH) for _ in range(served)]
    rows += [Observation(miner=miner, model="m", task=task, outcome="rate_limited", kind="probe", probe=round_id,
                         elapsed_ms=5.0) for _ in range(refused)]
    return rows


def terms(miner: str, price: float, *, task: str = "chat", outcome: str = "ok") -> Observation:
    return Observation(miner=miner, model="m", task=task, outcome=outcome, kind="terms",  # type: ignore[arg-type]
                       price_per_million=price)


def serving(miner: str, *, price: float = 0.1, task: str = "chat") -> list[Observation]:
    """A plain honest miner for the simple tests: one probe round, four challenges, its terms."""
    return [*probe(miner, "r1", served=4, task=task), *(ok(miner, task=task) for _ in range(4)),
            terms(miner, price, task=task)]


# ---------------------------------------------------------------------------- a market model


@dataclass
class Backend:
    """One machine: ``throughput`` tokens/s when saturated, ``tps`` tokens/s for one unloaded stream after
    ``ttft`` seconds (``latency`` of it fixed, the rest prompt processing, work each request adds to a burst);
    ``hotkeys`` in front of it advertise ``concurrency`` each and charge ``price``."""

    hotkeys: list[str]
    throughput: float = 200.0
    tps: float = 50.0
    ttft: float = 0.2
    latency: float = 0.02
    concurrency: int = 4
    price: float = 0.1
    refuse_probe_above: int | None = None  # a capacity liar: serves this many probe requests, refuses the rest
    organic_refused: int = 0  # a selective miner: organic requests it refuses per tempo
    answer_tokens: int = LENGTH  # a short-answer cheat delivers fewer


def market_tempo(backends: list[Backend], rng: random.Random, tempo: int, *, probe_cap: int = 8,
                 challenges: int = 12, rounds: int = 2) -> list[Observation]:
    observations: list[Observation] = []
    for round_index in range(rounds):
        round_id = f"{tempo}-{round_index}"
        for backend in backends:  # every hotkey probed at the same moment: they share the backend
            sent = {h: min(backend.concurrency, probe_cap) for h in backend.hotkeys}
            cap = backend.refuse_probe_above
            served = {h: n if cap is None else min(n, cap) for h, n in sent.items()}
            requests = sum(served.values())
            prefill = (backend.ttft - backend.latency) * requests
            seconds = backend.latency + prefill + requests * backend.answer_tokens / backend.throughput
            for hotkey in backend.hotkeys:
                observations += probe(hotkey, round_id, served=served[hotkey], refused=sent[hotkey] - served[hotkey],
                                      seconds=seconds * rng.uniform(0.95, 1.05), units=backend.answer_tokens)
    for backend in backends:
        for hotkey in backend.hotkeys:
            for _ in range(challenges):
                noise = rng.uniform(0.9, 1.1)
                elapsed = (backend.ttft + backend.answer_tokens / backend.tps) * noise
                observations.append(ok(hotkey, elapsed=elapsed, units=backend.answer_tokens,
                                       ttft=backend.ttft * 1000 * noise if backend.answer_tokens else None,
                                       verified=True if rng.random() < 0.1 else None, quality=1.0))
            observations += [Observation(miner=hotkey, model="m", task="chat", outcome="rate_limited", kind="organic")
                             for _ in range(backend.organic_refused)]
            observations.append(terms(hotkey, backend.price))
    return observations


def run_market(backends: list[Backend], *, tempos: int = 6, seed: int = 7) -> dict[str, float]:
    rng = random.Random(seed)
    states: dict[str, ScoreState] = {}
    for tempo in range(1, tempos + 1):
        states = update_scores(states, market_tempo(backends, rng, tempo), tempo)
    return weights_from_scores(states, tempos)


def honest_pair() -> list[Backend]:
    return [Backend(["h1"], throughput=220, tps=55), Backend(["h2"], throughput=180, tps=45, price=0.12)]


@pytest.mark.parametrize("k", range(2, 9))
def test_k_sybil_hotkeys_on_one_backend_earn_what_one_hotkey_does(k: int) -> None:
    single = run_market([*honest_pair(), Backend(["solo"])])
    sybils = [f"sybil{i}" for i in range(k)]
    split = run_market([*honest_pair(), Backend(sybils)])
    total = sum(split[h] for h in sybils)
    assert total == pytest.approx(single["solo"], rel=0.05)
    assert single["solo"] > 0.2  # it earns: the comparison is not between two zeros


def test_sybils_probed_at_the_cap_split_the_probe_not_the_backend() -> None:
    """Hotkeys that each advertise more than the probe cap still split one backend's saturated throughput."""
    single = run_market([*honest_pair(), Backend(["solo"], concurrency=64)])
    split = run_market([*honest_pair(), Backend(["s1", "s2", "s3"], concurrency=64)])
    assert split["s1"] + split["s2"] + split["s3"] == pytest.approx(single["solo"], rel=0.05)


def in_turn_round(hotkeys: list[str], *, window: float | None, rate: float = 100.0,
                  requests: int = 4) -> list[Observation]:
    """One round on a backend generating ``rate`` tokens/s that serves ``hotkeys`` in turn: all of the first's
    LENGTH-token requests, then the second's, ... Windowed: each hotkey's workers kept busy through the window,
    what ended after it counting by the share delivered inside; a burst: ``requests`` each, read to the last."""
    rows: list[Observation] = []
    clock = 0.0
    for hotkey in hotkeys:
        for _ in range(requests if window is None else 10**6):
            if window is not None and clock >= window:
                break
            start, clock = clock, clock + LENGTH / rate
            share = 1.0 if window is None or clock <= window else (window - start) / (clock - start)
            rows.append(Observation(miner=hotkey, model="m", task="chat", outcome="ok", kind="probe", probe="r",
                                    elapsed_ms=clock * 1000, units=LENGTH, max_tokens=LENGTH, in_window=share,
                                    window_ms=None if window is None else window * 1000))
        if window is not None:  # a worker still waiting when the window closed ends after it, all outside
            rows.append(Observation(miner=hotkey, model="m", task="chat", outcome="ok", kind="probe", probe="r",
                                    elapsed_ms=(window + 9) * 1000, units=LENGTH, max_tokens=LENGTH, in_window=0.0,
                                    window_ms=window * 1000))
    return rows


@pytest.mark.parametrize("k", [2, 3, 5])
def test_a_window_gives_hotkeys_served_in_turn_no_more_than_their_backend(k: int) -> None:
    hotkeys = [f"turn{i}" for i in range(k)]
    windowed = tempo_components(in_turn_round(hotkeys, window=10.0), ScoreParams())
    assert sum(windowed[h].tasks["chat"].throughput or 0.0 for h in hotkeys if h in windowed) <= 100.0 + 1e-9
    assert windowed["turn0"].tasks["chat"].throughput == pytest.approx(100.0)
    # the same order read to each hotkey's last answer pays 1 + 1/2 + ... + 1/k backends
    burst = tempo_components(in_turn_round(hotkeys, window=None), ScoreParams())
    total = sum(burst[h].tasks["chat"].throughput or 0.0 for h in hotkeys)
    assert total == pytest.approx(100.0 * sum(1 / (i + 1) for i in range(k)))


def test_a_windowed_round_counts_what_arrived_inside_the_window() -> None:
    rows = [Observation(miner="m1", model="m", task="chat", outcome="ok", kind="probe", probe="r", units=LENGTH,
                        elapsed_ms=elapsed, window_ms=4000.0, in_window=share)
            for elapsed, share in ((1500.0, 1.0), (3000.0, 1.0), (5000.0, 0.5), (9000.0, 0.0))]
    rows.append(Observation(miner="m1", model="m", task="chat", outcome="ok", kind="probe", probe="r", units=LENGTH,
                            elapsed_ms=2000.0, window_ms=4000.0, verified=False))  # failed: delivers nothing
    throughput = tempo_components(rows, ScoreParams())["m1"].tasks["chat"].throughput
    assert throughput == pytest.approx(2.5 * LENGTH / 4.0)


def test_a_capacity_liar_earns_less_than_the_honest_miner_it_copies() -> None:
    """Same backend: the honest one advertises the 2 requests it runs, the liar 1,000,000 and refuses the
    probe requests beyond 2 with 429."""
    weights = run_market([*honest_pair(), Backend(["honest"], concurrency=2),
                          Backend(["liar"], concurrency=1_000_000, refuse_probe_above=2)])
    assert weights["liar"] < 0.5 * weights["honest"]


def test_a_price_liar_refusing_organic_work_earns_less_than_honest() -> None:
    """Price 0 draws the gateway's organic requests; refusing them is a reliability failure each."""
    weights = run_market([*honest_pair(), Backend(["honest"], price=0.1),
                          Backend(["liar"], price=0.0, organic_refused=12)])
    assert weights["liar"] < weights["honest"]
    fair = run_market([*honest_pair(), Backend(["honest"], price=0.1), Backend(["cheap"], price=0.0)])
    assert fair["cheap"] > fair["honest"]  # charging less while serving is rewarded


def speeds(backends: list[Backend]) -> dict[str, float]:
    parts = tempo_components(market_tempo(backends, random.Random(3), 1), ScoreParams())
    return {miner: part.tasks["chat"].speed for miner, part in parts.items()}


@pytest.mark.parametrize("answer_tokens", [0, 2, 16])
def test_short_or_empty_answers_raise_no_speed_and_lower_no_honest_speed(answer_tokens: int) -> None:
    honest = [Backend(["h1"], tps=55), Backend(["h2"], tps=45), Backend(["h3"], tps=50)]
    alone = speeds([*honest, Backend(["full"], tps=50)])
    cheat = speeds([*honest, Backend(["short"], tps=50, answer_tokens=answer_tokens)])
    assert cheat["short"] < alone["full"]  # the same backend answering the asked length scores higher
    for miner in ("h1", "h2", "h3"):
        assert cheat[miner] >= alone[miner] - 1e-9


def test_weighted_median_is_set_by_weight_not_by_count() -> None:
    assert weighted_median([(10.0, 1.0), (20.0, 1.0), (30.0, 100.0)]) == 30.0
    assert weighted_median([(10.0, 1.0), (20.0, 1.0)]) == 15.0
    assert weighted_median([(5.0, 0.0)]) is None  # a miner with no measured throughput sets nothing
    # any number of zero-throughput liars cannot move the reference
    assert weighted_median([(10.0, 3.0), *((1e9, 0.0) for _ in range(50))]) == 10.0


def test_task_shares_cap_a_task_served_by_one_miner() -> None:
    observations = [*serving("chat1"), *serving("chat2"), *serving("embedder", task="embeddings")]
    weights = weights_from_scores(update_scores({}, observations, tempo=1), tempo=1)
    assert weights["embedder"] == pytest.approx(0.25)
    assert weights["chat1"] == pytest.approx(0.375)
    only_chat = update_scores({}, observations, tempo=1,
                              params=ScoreParams(task_shares={"chat": 1.0}, default_task_share=0.0))
    assert weights_from_scores(only_chat, tempo=1)["embedder"] == 0.0
    # a task the shares do not name (an installed plugin's) gets the default share, not nothing
    plugin = update_scores({}, [*serving("chat1"), *serving("ocr", task="ocr")], tempo=1,
                           params=ScoreParams(task_shares={"chat": 0.75}))
    assert weights_from_scores(plugin, tempo=1)["ocr"] == pytest.approx(0.25)


def test_cheater_is_zeroed_and_stays_banned() -> None:
    observations = [*serving("honest"), *serving("cheat"), ok("cheat", verified=False, quality=0.0)]
    states = update_scores({}, observations, tempo=1)
    weights = weights_from_scores(states, tempo=1)
    assert weights["cheat"] == 0.0 and weights["honest"] == pytest.approx(1.0)
    states = update_scores(states, [*serving("cheat"), *serving("honest")], tempo=2)  # honest-looking answers
    assert weights_from_scores(states, tempo=2)["cheat"] == 0.0
    params = ScoreParams(ban_tempos=3)
    states = update_scores({}, [ok("cheat", verified=False, quality=0.0), *serving("honest")], tempo=1, params=params)
    for tempo in range(2, 6):
        states = update_scores(states, [*serving("cheat"), *serving("honest")], tempo=tempo, params=params)
    assert weights_from_scores(states, tempo=5, params=params)["cheat"] > 0  # the ban expired after 3 tempos


def test_states_keep_each_tasks_share_and_quality_and_the_score_is_their_weighted_sum() -> None:
    params = ScoreParams(task_shares={"chat": 0.5, "ocr": 0.2}, default_task_share=0.3)
    first = [*serving("both"), *serving("chat-only"), *serving("both", task="ocr"), *serving("ocr-only", task="ocr"),
             *serving("plugin", task="acme-translate"),
             ok("both", verified=True, quality=0.9), ok("both", verified=True, quality=0.5, task="ocr"),
             ok("ocr-only", verified=True, quality=0.8, task="ocr")]
    states = update_scores({}, first, tempo=1, params=params)
    assert set(states["both"].tasks) == {"chat", "ocr"} and set(states["chat-only"].tasks) == {"chat"}
    chat = states["both"].tasks["chat"].share, states["chat-only"].tasks["chat"].share
    assert 0 < chat[0] < chat[1] and sum(chat) == pytest.approx(1.0)  # "both" has the lower verified quality
    assert states["both"].tasks["chat"].quality == 0.9
    # per task: the quality of that task's verified answers, not the miner's mean over tasks (0.7)
    assert states["both"].tasks["ocr"].quality == 0.5 and states["both"].quality == pytest.approx(0.7)
    assert states["chat-only"].tasks["chat"].quality is None  # none of its answers was verified
    assert states["plugin"].tasks == {"acme-translate": TaskScore(share=1.0)}  # alone on its task
    # the ocr-only miner's better quality earns it more of the ocr credit (the two sum to 1)
    ocr = states["both"].tasks["ocr"].share, states["ocr-only"].tasks["ocr"].share
    assert ocr[1] > ocr[0] > 0 and sum(ocr) == pytest.approx(1.0)

    # a tempo later: the ocr-only miner is gone (it decays), chat's verdicts are not sampled (quality kept)
    states = update_scores(states, [*serving("both"), *serving("chat-only"), *serving("both", task="ocr"),
                                    *serving("plugin", task="acme-translate")], tempo=2, params=params)
    assert states["ocr-only"].tasks["ocr"].share == pytest.approx(0.7 * ocr[1])
    assert states["both"].tasks["ocr"].share == pytest.approx(0.3 + 0.7 * ocr[0])
    assert states["both"].tasks["chat"].quality == 0.9 and states["both"].tasks["ocr"].quality == 0.5
    for state in states.values():
        weighted = sum(params.task_shares.get(task, 0.3) * figures.share for task, figures in state.tasks.items())
        assert state.ema == pytest.approx(weighted)

    # caught: every task's share goes with the score
    states = update_scores(states, [*serving("both"), ok("both", verified=False, quality=0.0)], tempo=3, params=params)
    assert states["both"].ema == 0.0 and {f.share for f in states["both"].tasks.values()} == {0.0}


def sampled(miner: str, hits: Callable[[int], int], answers: int = 8, positions: int = 8) -> list[Observation]:
    """Verified answers at temperature > 0, each with ``positions`` checked positions whose argmax an honest
    sampler takes with probability at most 0.5; ``hits(i)``: how many the answer took."""
    return [Observation(miner=miner, model="m", task="chat", outcome="ok", verified=True, quality=1.0,
                        greedy_hits=hits(i), greedy_bounds=(0.5,) * positions, elapsed_ms=2000, units=LENGTH)
            for i in range(answers)]


def test_a_greedy_cache_is_convicted_across_its_verified_answers() -> None:
    observations = [*serving("honest"), *serving("cache"), *sampled("honest", lambda i: 3 + i % 3),
                    *sampled("cache", lambda i: 8)]
    parts = tempo_components(observations, ScoreParams())
    assert parts["cache"].caught and parts["cache"].convicted_by == ("greedy_cache",)
    assert not parts["honest"].caught
    # each answer alone passed; a few cached answers are not yet evidence enough
    few = tempo_components([*serving("cache"), *sampled("cache", lambda i: 8, answers=2)], ScoreParams())
    assert not few["cache"].caught
    states = update_scores({}, observations, tempo=1)
    assert states["cache"].banned_until == 21 and weights_from_scores(states, tempo=1)["cache"] == 0.0


def test_substitution_is_convicted_from_fisher_sums() -> None:
    def texts(miner: str, fisher: float) -> list[Observation]:
        return [Observation(miner=miner, model="m", task="chat", outcome="ok", verified=True, quality=1.0,
                            fisher=fisher, text_positions=8) for _ in range(10)]

    # 8 positions: 16 degrees of freedom, mean 16 for the reference model itself
    parts = tempo_components([*texts("same", 16.0), *texts("other", 60.0)], ScoreParams())
    assert parts["other"].convicted_by == ("substitution",) and not parts["same"].caught


def test_unverified_answers_count_as_missing_not_zero() -> None:
    verified = update_scores({}, [*serving("a"), *serving("b"), ok("a", verified=True, quality=0.8),
                                  ok("b", verified=True, quality=0.8)], tempo=1)
    states = update_scores(verified, [*serving("a"), *serving("b"), ok("b", verified=True, quality=0.8)], tempo=2)
    assert states["a"].quality == states["b"].quality == 0.8
    assert states["a"].ema == pytest.approx(states["b"].ema)


def test_faster_cheaper_more_reliable_and_higher_throughput_miners_score_higher() -> None:
    fast = update_scores({}, [*probe("fast", "r", served=4), *probe("slow", "r", served=4),
                              ok("fast", elapsed=1.0, ttft=50), ok("slow", elapsed=4.0, ttft=200)], tempo=1)
    assert fast["fast"].ema > fast["slow"].ema
    cheap = update_scores({}, [*serving("cheap", price=0.1), *serving("dear", price=0.4)], tempo=1)
    assert cheap["cheap"].ema > cheap["dear"].ema
    flaky = update_scores({}, [*serving("solid"), *serving("flaky"),
                               Observation(miner="flaky", model="m", task="chat", outcome="timeout")], tempo=1)
    assert flaky["solid"].ema > flaky["flaky"].ema
    big = update_scores({}, [*serving("small"), *probe("big", "r1", served=8), *(ok("big") for _ in range(4)),
                             terms("big", 0.1)], tempo=1)
    assert big["big"].ema == pytest.approx(2 * big["small"].ema)  # twice the measured throughput: twice the pay


def test_unreadable_terms_and_failed_attestations_are_failures_not_served_requests() -> None:
    observations = [*serving("attested"), *serving("plain"), *serving("failing"), *serving("mute"),
                    Observation(miner="attested", model="", task="attestation", outcome="ok", attested=True),
                    Observation(miner="failing", model="", task="attestation", outcome="error", attested=False),
                    terms("mute", 0.0, outcome="error")]
    parts = tempo_components(observations, ScoreParams())
    assert parts["attested"].attested and not parts["plain"].attested and not parts["failing"].attested
    assert parts["attested"].served == parts["plain"].served == 8  # neither is a served request
    assert parts["failing"].reliability == pytest.approx(8 / 9)
    assert parts["mute"].reliability == pytest.approx(8 / 9)
    states = update_scores({}, observations, tempo=1)
    assert states["attested"].ema == pytest.approx(1.2 * states["plain"].ema)  # attested capacity: 20 % more
    assert states["plain"].ema > states["failing"].ema


def test_throughput_is_kept_for_tempos_without_a_probe_and_silent_miners_decay() -> None:
    states = update_scores({}, [*serving("a"), *serving("b")], tempo=1)
    assert states["a"].throughput["chat"] == pytest.approx(4 * LENGTH / 4.0)
    later = update_scores(states, [ok("a"), terms("a", 0.1), ok("b"), terms("b", 0.1)], tempo=2)
    # half of the chat share (0.75) both tempos: measured last tempo, kept this one
    assert later["a"].ema == pytest.approx(0.375) and later["a"].throughput == states["a"].throughput
    decayed = update_scores(states, [*serving("a")], tempo=2)
    assert decayed["b"].ema < states["b"].ema
    only_errors = update_scores({}, [Observation(miner="x", model="m", task="chat", outcome="error")], tempo=1)
    assert only_errors["x"].ema == 0.0
    assert weights_from_scores({"ghost": ScoreState()}, tempo=1) == {"ghost": 0.0}


def test_a_miner_that_stops_taking_requests_earns_nothing_from_its_last_throughput() -> None:
    """The cheat: be measured once, then advertise no capacity (terms still readable, so the validator sends
    nothing, and no app's request reaches it either) and live on the last measured throughput. A tempo in
    which a miner served nothing earns it nothing; a tempo it answered in earns its share again."""
    states = update_scores({}, [*serving("a"), *serving("b")], tempo=1)
    parts = tempo_components([terms("a", 0.1), ok("b"), terms("b", 0.1)], ScoreParams(), states)
    assert parts["a"].reliability == 0.0 and parts["a"].served == 0
    idle = update_scores(states, [terms("a", 0.1), ok("b"), terms("b", 0.1)], tempo=2)
    assert tempo_task_shares(states, parts, 2, ScoreParams())["a"] == {"chat": 0.0}
    assert idle["a"].ema == pytest.approx(0.7 * states["a"].ema)
    back = update_scores(idle, [ok("a"), terms("a", 0.1), ok("b"), terms("b", 0.1)], tempo=3)
    assert back["a"].ema > idle["a"].ema


def test_a_probe_window_is_open_until_all_its_answers_are_recorded() -> None:
    """Each probe answer says how many answers its window got, every miner's; a window with fewer recorded
    is open (an epoch now would credit part of it over the whole window); answers without the count (another
    validator version, the simulator) and other kinds never hold anything."""
    def answers(round_id: str, count: int, of: int, task: str = "chat") -> list[Observation]:
        return [Observation(miner=f"m{i % 2}", model="m", task=task, outcome="ok", kind="probe", probe=round_id,
                            units=8, window_ms=4000, window_answers=of) for i in range(count)]

    recorded = [*answers("r1", 4, 4), *answers("r2", 3, 4), *answers("r2", 2, 2, task="embeddings"),
                *answers("r3", 1, 0), ok("m0"), terms("m0", 0.1)]
    assert open_windows(recorded) == {("chat", "r2")}
    assert open_windows([*recorded, *answers("r2", 1, 4)]) == frozenset()


def test_a_task_a_miner_stopped_serving_earns_it_nothing_from_its_last_throughput() -> None:
    """In a tempo without a probe round a miner that still answers OCR is credited for it; once it serves only
    chat, its last OCR throughput earns it nothing, however long it stays active."""
    first = update_scores({}, [*serving("a"), *serving("b"), *probe("a", "r1", served=4, task="ocr"),
                               *probe("c", "r1", served=4, task="ocr")], tempo=1)
    assert first["a"].throughput["ocr"] > 0
    still = tempo_components([ok("a"), ok("a", task="ocr"), ok("b"), ok("c", task="ocr")], ScoreParams(), first)
    shares = tempo_task_shares(first, still, 2, ScoreParams())
    assert shares["a"]["ocr"] == pytest.approx(0.5)  # it still answers OCR challenges
    stopped = tempo_components([ok("a"), ok("b"), ok("c", task="ocr")], ScoreParams(), first)
    shares = tempo_task_shares(first, stopped, 2, ScoreParams())
    assert "ocr" not in shares["a"] and shares["c"]["ocr"] == pytest.approx(1.0)


def test_states_and_observations_round_trip_through_json() -> None:
    state = ScoreState(ema=0.25, quality=0.9, banned_until=7, seen=True, throughput={"chat": 31.5, "embeddings": 4.0},
                       tasks={"chat": TaskScore(share=0.3, quality=0.9), "acme-translate": TaskScore(share=0.1)})
    assert ScoreState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert ScoreState.from_dict({"ema": 0.5, "quality": 1.0, "banned_until": -1, "seen": True}) == \
        ScoreState(ema=0.5, seen=True)  # saved before throughput was kept
    observation = sampled("m", lambda i: 3)[0]
    observation = Observation(**{**observation.to_dict(), "kind": "probe", "probe": "r9", "fisher": 12.5})
    assert Observation.from_dict(json.loads(json.dumps(observation.to_dict()))) == observation
    legacy = {"miner": "m", "model": "m", "task": "chat", "outcome": "ok", "tokens_per_s": 3.0}
    assert Observation.from_dict(legacy).category == "challenge"  # a field no longer kept is ignored
    unreadable = Observation(miner="m", model="", task="terms", outcome="error")  # recorded without a kind
    assert unreadable.category == "terms"
    assert tempo_components([unreadable, *serving("m")], ScoreParams())["m"].reliability == pytest.approx(8 / 9)


def test_time_to_first_token_counts_only_for_streamed_answers() -> None:
    """A whole answer's first byte comes with its end: were it read as time to first token, a shorter
    answer would win it. It counts as nothing; a stream's real first token does."""
    base = [*serving("ref1"), *serving("ref2")]
    whole = tempo_components([*base, *probe("x", "r1", served=4), ok("x", elapsed=0.5, units=4, ttft=500)],
                             ScoreParams())
    unknown = tempo_components([*base, *probe("x", "r1", served=4), ok("x", elapsed=0.5, units=4, ttft=None)],
                               ScoreParams())
    assert whole["x"].tasks["chat"].speed == unknown["x"].tasks["chat"].speed
    streamed = tempo_components([*base, *probe("x", "r1", served=4), ok("x", elapsed=0.5, units=4, ttft=20)],
                                ScoreParams())
    assert streamed["x"].tasks["chat"].speed > unknown["x"].tasks["chat"].speed


def test_references_in_a_tempo_without_a_probe_round_use_the_last_measured_throughput() -> None:
    states = update_scores({}, [*serving("big"), *probe("big", "r1", served=4), *serving("small")], tempo=1)
    assert states["big"].throughput["chat"] > states["small"].throughput["chat"]
    later = [ok("big", elapsed=1.0), terms("big", 0.1), ok("small", elapsed=4.0), terms("small", 0.1),
             *(ok("liar", elapsed=4.0) for _ in range(3)), terms("liar", 0.1)]  # no probe round this tempo
    parts = tempo_components(later, ScoreParams(), states)
    # big holds two thirds of the measured throughput: its rate is the reference; the unmeasured liar's
    # three slow answers set nothing
    assert parts["big"].tasks["chat"].speed == pytest.approx(0.5)
    assert parts["small"].tasks["chat"].speed < 0.4
    assert parts["liar"].tasks["chat"].speed == pytest.approx(parts["small"].tasks["chat"].speed)
    blind = tempo_components(later, ScoreParams())  # without the states there is nothing to weigh
    assert blind["small"].tasks["chat"].speed == 0.5
