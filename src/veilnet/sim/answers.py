"""What a miner's answer verifies to, per task and behaviour: the real challenge generators and verifiers.

A *behaviour* is what a miner sends for one request: ``honest``, ``empty``, ``truncate``, ``cache``,
``substitute`` (a cheaper model) or ``inflate-usage``. Each task's bench draws a fresh challenge with the
task's REAL generator and returns the REAL verifier's verdict on the behaviour's answer:

- **chat** draws the request with :func:`veilnet.tasks.challenges.challenge_request` and samples the verdict
  from ``data/chat_verdicts.json``: verdicts that ``scripts/gen_sim_verdicts.py`` computed once with the real
  verifier and the real reference model (SmolLM2) on recorded real answers and each cheat's answer to the same
  request (running the reference per simulated answer would take minutes per epoch);
- **embeddings** the same: texts drawn by :func:`veilnet.tasks.challenges.embeddings_texts`, verdicts of the
  real verifier and reference model recorded by ``scripts/gen_sim_embeddings.py``;
- **ai-detection** replays challenges the real generator wrote with the real writer models and the baseline
  miner's answers to them (``scripts/gen_sim_detection.py``), verified by the real verifier;
- **ocr** regenerates the pictures of ``data/ocr_readings.json`` with the real generator (their seeds) and
  runs the real verifier on readings that ``scripts/gen_sim_ocr.py`` recorded from the real engine
  (RapidOCR, PP-OCRv4): the honest reading, and for ``substitute`` the cheaper reading of docs/tasks.md (the
  picture shrunk to a third);
- **orientation** draws pages with the real generator and runs the real verifier: an honest classifier gets
  every page right (120 of 120 measured, docs/tasks.md), a cheaper one tells only upright-or-upside-down
  from sideways (the text-line shortcut), guessing which.

``cache`` answers with what the same miner sent for its previous challenge (a cache keyed on anything the
validator does not repeat can only return another challenge's answer).

Drawing pictures is slow (~0.2 s an OCR picture, ~2 s an orientation challenge on a loaded 2-core machine) and
detection challenges need models, so these benches hold a pool of challenges and each miner walks the pool in
an order of its own: a miner never sees a challenge twice before it has seen the whole pool.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, Protocol, TypeVar

from veilnet.errors import ConfigError
from veilnet.tasks.challenges import challenge_request, embeddings_texts
from veilnet.tasks.detection import (
    DETECTION_MODEL,
    DetectionChallenge,
    DetectionRequest,
    verify_detection_answer,
)
from veilnet.tasks.ocr import OCR_MODEL, OcrChallenge, generate_ocr_challenge, ocr_answer, verify_ocr_answer
from veilnet.tasks.orientation import (
    ORIENTATION_MODEL,
    OrientationChallenge,
    generate_orientation_challenge,
    verify_orientation_answer,
)
from veilnet.tasks.verdict import GreedyEvidence, RecountedUsage, Verdict

__all__ = [
    "BEHAVIOURS",
    "CHAT_VERDICTS",
    "DETECTION_RECORDS",
    "EMBEDDINGS_VERDICTS",
    "OCR_READINGS",
    "TASKS",
    "Answered",
    "Behaviour",
    "ChatBench",
    "DetectionBench",
    "EmbeddingsBench",
    "OcrBench",
    "OrientationBench",
    "TaskBench",
    "bench_for",
]

Behaviour = Literal["honest", "empty", "truncate", "cache", "substitute", "inflate-usage"]
BEHAVIOURS: tuple[Behaviour, ...] = ("honest", "empty", "truncate", "cache", "substitute", "inflate-usage")
CHAT_VERDICTS = Path(__file__).parent / "data" / "chat_verdicts.json"
OCR_READINGS = Path(__file__).parent / "data" / "ocr_readings.json"
EMBEDDINGS_VERDICTS = Path(__file__).parent / "data" / "embeddings_verdicts.json"
DETECTION_RECORDS = Path(__file__).parent / "data" / "detection_records.json"
CHAT_MODEL = "SmolLM2-135M-Instruct"
T = TypeVar("T")
TASKS = ("chat", "embeddings", "ai-detection", "ocr", "orientation")


@dataclass(frozen=True)
class Answered:
    """One verified answer: the verdict, and the units the miner claimed it delivered."""

    verdict: Verdict
    claimed_units: int


class TaskBench(Protocol):
    task: str
    behaviours: tuple[Behaviour, ...]  # the behaviours that apply to the task
    probe_units: int  # the units one probe request asks for
    claims_units: bool  # an unverified answer counts the units its miner claims (chat tokens)

    def answer(self, behaviour: Behaviour, rng: random.Random, memory: dict[str, object]) -> Answered: ...


@cache
def _table(path: Path) -> dict[str, list[dict[str, object]]]:
    document = json.loads(path.read_text(encoding="utf-8"))
    table: dict[str, list[dict[str, object]]] = document["verdicts"]
    return table


def _recorded_verdict(row: dict[str, object]) -> Verdict:
    bounds = tuple(float(b) for b in row["greedy_bounds"])  # type: ignore[attr-defined]
    recount = int(row["completion_tokens"])  # type: ignore[call-overload]
    return Verdict(
        ok=bool(row["ok"]), quality=float(row["quality"]), reason=row["reason"],  # type: ignore[arg-type]
        checked=len(bounds), usage=RecountedUsage(0, recount, None, None),
        greedy=GreedyEvidence(int(row["greedy_hits"]), bounds) if bounds else None,  # type: ignore[call-overload]
        fisher=float(row["fisher"]), text_positions=int(row["text_positions"]),  # type: ignore[arg-type,call-overload]
    )


def _sampled(path: Path, behaviour: Behaviour, rng: random.Random, claims_units: bool) -> Answered:
    rows = _table(path).get(behaviour)
    if not rows:
        raise ConfigError(f"{path} holds no verdicts for behaviour {behaviour!r}")
    verdict = _recorded_verdict(rng.choice(rows))
    recount = verdict.usage.completion_tokens if verdict.usage is not None else 0
    claimed = 10 * max(1, recount) if behaviour == "inflate-usage" and claims_units else recount
    return Answered(verdict, claimed)


@dataclass
class ChatBench:
    """Requests drawn by the real generator; verdicts sampled from ``data/chat_verdicts.json`` (independently
    of the drawn request: the table's requests are recorded ones)."""

    task: str = "chat"
    behaviours: tuple[Behaviour, ...] = BEHAVIOURS
    probe_units: int = 32
    claims_units: bool = True  # delivered tokens: what the miner claims unless the answer is recounted

    def answer(self, behaviour: Behaviour, rng: random.Random, memory: dict[str, object]) -> Answered:
        challenge_request(CHAT_MODEL, rng)
        return _sampled(CHAT_VERDICTS, behaviour, rng, self.claims_units)


@dataclass
class EmbeddingsBench:
    """Texts drawn by the real generator; verdicts sampled from ``data/embeddings_verdicts.json``. Units are
    inputs embedded, fixed by the request, so inflated usage fails verification and changes no unit."""

    task: str = "embeddings"
    behaviours: tuple[Behaviour, ...] = BEHAVIOURS
    probe_units: int = 2
    claims_units: bool = False

    def answer(self, behaviour: Behaviour, rng: random.Random, memory: dict[str, object]) -> Answered:
        embeddings_texts(rng)
        return _sampled(EMBEDDINGS_VERDICTS, behaviour, rng, self.claims_units)


def _next(pool: list[T], memory: dict[str, object], rng: random.Random) -> T:
    """The miner's next challenge from ``pool`` (its own shuffled order, no repeat until the pool is spent)."""
    order = memory.get("order")
    if not isinstance(order, list) or not order:
        order = list(range(len(pool)))
        rng.shuffle(order)
        memory["order"] = order
    return pool[int(order.pop())]


@cache
def _ocr_readings() -> list[dict[str, str]]:
    document = json.loads(OCR_READINGS.read_text(encoding="utf-8"))
    readings: list[dict[str, str]] = document["readings"]
    return readings


@cache
def _ocr_pool() -> list[tuple[OcrChallenge, dict[str, str]]]:
    pool = []
    for row in _ocr_readings():
        challenge = generate_ocr_challenge(random.Random(int(row["seed"])))
        if challenge.truth != row["truth"]:
            raise ConfigError(f"{OCR_READINGS}: seed {row['seed']} no longer draws the recorded picture; "
                              "run scripts/gen_sim_ocr.py again")
        pool.append((challenge, row))
    return pool


@cache
def _orientation_pool(seed: int, size: int) -> list[OrientationChallenge]:
    draw = random.Random(seed)
    return [generate_orientation_challenge(draw, rounds=(1, 1)) for _ in range(size)]


@dataclass
class OcrBench:
    """Pictures regenerated from the seeds of ``data/ocr_readings.json``, answered with the real engine's
    recorded readings (honest, and of the picture shrunk to a third for ``substitute``)."""

    task: str = "ocr"
    behaviours: tuple[Behaviour, ...] = ("honest", "empty", "truncate", "cache", "substitute")
    probe_units: int = 1
    claims_units: bool = False
    seed: int = 0

    def answer(self, behaviour: Behaviour, rng: random.Random, memory: dict[str, object]) -> Answered:
        challenge, reading = _next(_ocr_pool(), memory, rng)
        previous = str(memory.get("previous", ""))
        memory["previous"] = reading["honest"]
        text = {
            "honest": reading["honest"],
            "empty": "",
            "truncate": reading["honest"][: len(reading["honest"]) // 3],
            "cache": previous,
            "substitute": reading["substitute"],
        }[behaviour]
        verdict = verify_ocr_answer(challenge, ocr_answer("sim", 0, OCR_MODEL, text).model_dump())
        return Answered(verdict, 1)


def _shortcut(angle: int, rng: random.Random) -> int:
    """Upright-or-upside-down versus sideways from the text lines' direction; which of the two is a guess."""
    return rng.choice((0, 180)) if angle in (0, 180) else rng.choice((90, 270))


@dataclass
class OrientationBench:
    task: str = "orientation"
    behaviours: tuple[Behaviour, ...] = ("honest", "empty", "truncate", "cache", "substitute")
    probe_units: int = 4
    claims_units: bool = False
    pool: int = 8
    seed: int = 0

    def answer(self, behaviour: Behaviour, rng: random.Random, memory: dict[str, object]) -> Answered:
        challenge = _next(_orientation_pool(self.seed, self.pool), memory, rng)
        truth = list(challenge.truth)
        previous = memory.get("previous")
        memory["previous"] = truth
        angles: list[int]
        if behaviour == "empty":
            angles = []
        elif behaviour == "truncate":
            angles = truth[: len(truth) // 2]
        elif behaviour == "cache":
            angles = [int(a) for a in previous] if isinstance(previous, list) else [0] * len(truth)
        elif behaviour == "substitute":
            angles = [_shortcut(a, rng) for a in truth]
        else:
            angles = truth
        answer = {"id": "sim", "object": "list", "created": 0, "model": ORIENTATION_MODEL,
                  "data": [{"index": i, "angle": a} for i, a in enumerate(angles)]}
        return Answered(verify_orientation_answer(challenge, answer), len(truth))


@cache
def _detection_pool() -> list[tuple[DetectionChallenge, list[float]]]:
    document = json.loads(DETECTION_RECORDS.read_text(encoding="utf-8"))
    return [(DetectionChallenge(DetectionRequest(model=DETECTION_MODEL, input=list(row["texts"])),
                                tuple(bool(t) for t in row["truth"]), ()), [float(p) for p in row["honest"]])
            for row in document["records"]]


@dataclass
class DetectionBench:
    """Challenges the real generator wrote with the real writer models and the baseline miner's real answers,
    recorded in ``data/detection_records.json``; verified by the real verifier. A cheaper model is no model:
    a constant 0.5 (quality exactly 0). Its verifier only scores: nothing but a malformed answer fails."""

    task: str = "ai-detection"
    behaviours: tuple[Behaviour, ...] = ("honest", "empty", "truncate", "cache", "substitute")
    probe_units: int = 1
    claims_units: bool = False

    def answer(self, behaviour: Behaviour, rng: random.Random, memory: dict[str, object]) -> Answered:
        challenge, honest = _next(_detection_pool(), memory, rng)
        previous = memory.get("previous")
        memory["previous"] = honest
        count = len(honest)
        probabilities: list[float]
        if behaviour == "empty":
            probabilities = []
        elif behaviour == "truncate":
            probabilities = honest[: count // 2]
        elif behaviour == "cache":
            cached = [float(p) for p in previous] if isinstance(previous, list) and previous else [0.5]
            probabilities = [cached[i % len(cached)] for i in range(count)]
        elif behaviour == "substitute":
            probabilities = [0.5] * count
        else:
            probabilities = honest
        answer = {"id": "sim", "object": "list", "created": 0, "model": DETECTION_MODEL,
                  "results": [{"index": i, "ai_probability": p} for i, p in enumerate(probabilities)]}
        return Answered(verify_detection_answer(challenge, answer), 1)


def bench_for(task: str, *, seed: int = 0) -> TaskBench:
    if task == "chat":
        return ChatBench()
    if task == "embeddings":
        return EmbeddingsBench()
    if task == "ai-detection":
        return DetectionBench()
    if task == "ocr":
        return OcrBench(seed=seed)
    if task == "orientation":
        return OrientationBench(seed=seed)
    raise ConfigError(f"the simulator covers tasks {', '.join(TASKS)}; got {task!r}")
