"""AI-content detection with the real models: challenges mix human continuations of the shipped books with
SmolLM2/Gemma continuations of the same prefixes; the Brier-skill verifier gives a constant, an answer cached
from another challenge and a surface-statistics shortcut nothing, while the baseline detector (SmolLM2 token
statistics) earns clearly more; a miner holding the public corpus can look human passages up, which a private
corpus defeats; malformed answers fail with a reason; the engine refuses bad input."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from veilnet.errors import InvalidRequest, NotFound
from veilnet.models.detection import BASELINE, LogisticMapping, TokenStatsDetectionEngine
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.models.textstats import LlamaCppTokenScorer, TextFeatures, text_features
from veilnet.tasks.corpus import DEFAULT_CORPUS_DIR, HumanCorpus
from veilnet.tasks.detection import (
    DETECTION_MODEL,
    WRITERS,
    DetectionAnswer,
    DetectionChallenge,
    DetectionRequest,
    DetectionResult,
    brier_score,
    detection_units,
    generate_detection_challenge,
    normalise_text,
    verify_detection_answer,
)

pytestmark = [pytest.mark.model, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("models"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def challenges(cache: Path) -> list[DetectionChallenge]:
    async with LlamaCppEngine(list(WRITERS), cache_dir=cache, concurrency=1, threads=1) as writer:
        return [await generate_detection_challenge(random.Random(seed), writer, texts=(4, 4)) for seed in range(4)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def scorer(cache: Path) -> AsyncIterator[LlamaCppTokenScorer]:
    async with LlamaCppTokenScorer(cache_dir=cache) as opened:
        yield opened


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def honest(scorer: LlamaCppTokenScorer, challenges: list[DetectionChallenge]) -> list[dict[str, object]]:
    engine = TokenStatsDetectionEngine(scorer)
    return [(await engine.detect(challenge.request)).model_dump() for challenge in challenges]


def _answer(probabilities: list[float], model: str = DETECTION_MODEL) -> dict[str, object]:
    return DetectionAnswer(id="d", created=int(time.time()), model=model, results=[
        DetectionResult(index=i, ai_probability=p) for i, p in enumerate(probabilities)]).model_dump()


def _mean_quality(challenges: list[DetectionChallenge], answers: list[dict[str, object]]) -> float:
    return statistics.fmean(verify_detection_answer(c, a).quality for c, a in zip(challenges, answers, strict=True))


def _squashed(folder: Path) -> str:
    return " ".join(normalise_text(path.read_text()) for path in sorted(folder.glob("*.txt")))


@pytest.mark.asyncio(loop_scope="module")
async def test_challenges_mix_human_and_machine_continuations(challenges: list[DetectionChallenge]) -> None:
    books = _squashed(DEFAULT_CORPUS_DIR)
    truth = [t for c in challenges for t in c.truth]
    assert 0 < sum(truth) < len(truth)
    for challenge in challenges:
        for text, machine, writer in zip(challenge.request.texts(), challenge.truth, challenge.writers, strict=True):
            assert 30 <= len(text.split()) <= 80 and text == " ".join(text.split())
            assert (text in books) is not machine  # human text is the books' own; machine text is new
            assert (writer in WRITERS) if machine else writer is None


@pytest.mark.asyncio(loop_scope="module")
async def test_the_baseline_earns_clearly_more_than_guessing(challenges: list[DetectionChallenge],
                                                             honest: list[dict[str, object]]) -> None:
    assert all(verify_detection_answer(c, a).ok for c, a in zip(challenges, honest, strict=True))
    baseline = _mean_quality(challenges, honest)
    assert baseline >= 0.2, baseline
    for constant in (0.0, 0.5, 1.0):
        assert _mean_quality(challenges, [_answer([constant] * len(c.truth)) for c in challenges]) < baseline / 3
    assert _mean_quality(challenges, [_answer([0.5] * len(c.truth)) for c in challenges]) == 0.0


@pytest.mark.asyncio(loop_scope="module")
async def test_an_answer_cached_from_another_challenge_earns_little(challenges: list[DetectionChallenge],
                                                                    honest: list[dict[str, object]]) -> None:
    baseline = _mean_quality(challenges, honest)
    cached = []
    for index, challenge in enumerate(challenges):
        other = honest[(index + 1) % len(honest)]["results"]
        probabilities = [r["ai_probability"] for r in other][: len(challenge.truth)]  # type: ignore[index]
        cached.append(_answer(probabilities + [0.5] * (len(challenge.truth) - len(probabilities))))
    assert _mean_quality(challenges, cached) < baseline / 2


@pytest.mark.asyncio(loop_scope="module")
async def test_a_surface_statistics_shortcut_earns_little(challenges: list[DetectionChallenge],
                                                          honest: list[dict[str, object]]) -> None:
    """No model: the words' mean length and how many are distinct (both sides are the same length, the same
    books' style and start and end mid-sentence, so the surface says little)."""
    def shortcut(text: str) -> float:
        words = text.split()
        richness = len({w.lower() for w in words}) / len(words)
        return min(1.0, max(0.0, 0.5 + 2.0 * (0.75 - richness)))
    answers = [_answer([shortcut(t) for t in c.request.texts()]) for c in challenges]
    assert _mean_quality(challenges, answers) < _mean_quality(challenges, honest) / 2


@pytest.mark.asyncio(loop_scope="module")
async def test_corpus_lookup_wins_on_the_public_corpus_and_loses_on_a_private_one(
        challenges: list[DetectionChallenge]) -> None:
    """A miner holding the books answers 'human' for text found in them. Against the corpus it holds that is
    perfect; a validator drawing human passages from a corpus the miner lacks (here: the other book) defeats
    it. The machine texts are the module's challenges' own; the human ones are drawn as the generator does."""
    held_by_miner = normalise_text((DEFAULT_CORPUS_DIR / "carroll-alice.txt").read_text())
    public = HumanCorpus({"alice": held_by_miner.split()})
    private = HumanCorpus({"brown": (DEFAULT_CORPUS_DIR / "chesterton-innocence-of-father-brown.txt").read_text().split()})
    machine = [text for c in challenges for text, m in zip(c.request.texts(), c.truth, strict=True) if m][:6]

    def challenge_from(corpus: HumanCorpus) -> DetectionChallenge:
        rng = random.Random(5)
        human = [normalise_text(corpus.passage(rng, 30, rng.randint(30, 80)).continuation) for _ in machine]
        request = DetectionRequest(model=DETECTION_MODEL, input=[*machine, *human])
        return DetectionChallenge(request, (True,) * len(machine) + (False,) * len(human),
                                  (WRITERS[0],) * len(machine) + (None,) * len(human))

    def lookup(challenge: DetectionChallenge) -> dict[str, object]:
        return _answer([0.0 if text in held_by_miner else 1.0 for text in challenge.request.texts()])
    assert len(machine) >= 3
    on_public, on_private = challenge_from(public), challenge_from(private)
    assert verify_detection_answer(on_public, lookup(on_public)).quality == 1.0
    assert verify_detection_answer(on_private, lookup(on_private)).quality == 0.0


async def test_verifier_maths_and_malformed_answers() -> None:
    request = DetectionRequest(model=DETECTION_MODEL, input=["one text here", "another text", "a third"])
    challenge = DetectionChallenge(request, (True, False, True), ("gemma-3-270m", None, "SmolLM2-135M-Instruct"))
    assert brier_score([1.0, 0.0, 1.0], challenge.truth) == 0.0
    assert verify_detection_answer(challenge, _answer([1.0, 0.0, 1.0])).quality == 1.0
    assert verify_detection_answer(challenge, _answer([0.5, 0.5, 0.5])).quality == 0.0
    assert verify_detection_answer(challenge, _answer([0.0, 1.0, 0.0])).quality == 0.0
    assert verify_detection_answer(challenge, _answer([0.8, 0.3, 0.6])).quality == pytest.approx(1 - 0.29 / 3 / 0.25)
    good = _answer([0.9, 0.1, 0.9])
    hostile: list[object] = [
        None, "0.5", {}, _answer([0.5, 0.5]), _answer([0.5] * 4), {**good, "model": "other"},
        {**good, "results": [{"index": 0, "ai_probability": 1.5}] * 3},
        {**good, "results": [{"index": i, "ai_probability": float("nan")} for i in range(3)]},
        {**good, "results": [{"index": 0, "ai_probability": 0.5}] * 3}, {**good, "surprise": True},
    ]
    for answer in hostile:
        verdict = verify_detection_answer(challenge, answer)
        assert not verdict.ok and verdict.reason, answer
    assert detection_units(request) == pytest.approx(len("one text hereanother texta third") / 1000)
    with pytest.raises(ValueError, match="1 to 16 texts"):
        DetectionRequest(model=DETECTION_MODEL, input=["x"] * 17)
    with pytest.raises(ValueError, match="empty"):
        DetectionRequest(model=DETECTION_MODEL, input=["fine", "  "])


@pytest.mark.asyncio(loop_scope="module")
async def test_engine_refuses_bad_input_and_features_are_sane(scorer: LlamaCppTokenScorer) -> None:
    engine = TokenStatsDetectionEngine(scorer)
    with pytest.raises(NotFound):
        await engine.detect(DetectionRequest(model="gpt-4o", input="some text"))
    with pytest.raises(InvalidRequest, match="too short"):
        await engine.detect(DetectionRequest(model=DETECTION_MODEL, input="a"))
    predictable = await text_features(scorer, "one two three four five six seven eight nine ten eleven twelve")
    surprising = await text_features(scorer, "velvet quantum porridge sings beneath ninety crooked lanterns")
    assert predictable.mean_logprob > surprising.mean_logprob
    assert predictable.argmax_share > surprising.argmax_share
    assert 0 < predictable.positions <= 64
    certain = LogisticMapping(0.0, (0.0, 100.0, 0.0))
    assert certain.probability(TextFeatures(0.0, 1.0, 0.0, 1)) == pytest.approx(1.0)
    assert 0.0 < BASELINE.probability(surprising) < 1.0
