"""What a miner's answer verifies to, per task and behaviour: the real challenge generators and verifiers.

A *behaviour* is what a miner sends for one request: ``honest``, ``empty``, ``truncate``, ``cache``,
``substitute`` (a cheaper model) or ``inflate-usage``. Each task's bench draws a fresh challenge with the
task's REAL generator and returns the REAL verifier's verdict on the behaviour's answer:

- **chat** draws the request with :func:`veilnet.tasks.challenges.challenge_request` and samples the verdict
  from ``data/chat_verdicts.json``: verdicts that ``scripts/gen_sim_verdicts.py`` computed once with the real
  verifier and the real reference model (SmolLM2) on recorded real answers and each cheat's answer to the same
  request (running the reference per simulated answer would take minutes per epoch);
- **ocr** and **orientation** draw pictures with their real generators and run their pure verifiers on the
  answer the behaviour gives. An honest OCR reading misreads 0.2 % of characters (docs/tasks.md measured mean
  quality 0.999), a cheaper reading 29 % (the picture shrunk to a third: mean quality 0.710); an honest
  classifier gets every page right (120 of 120 measured), a cheaper one tells only upright-or-upside-down
  from sideways (the text-line shortcut).

``cache`` answers with what the same miner sent for its previous challenge (a cache keyed on anything the
validator does not repeat can only return another challenge's answer).

Drawing pictures is slow (~0.2 s an OCR picture, ~2 s an orientation challenge on a loaded 2-core machine), so
the image benches draw a pool of ``pool`` challenges once per run and each miner walks the pool in an order of
its own: a miner never sees a challenge twice within ``pool`` answers.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal, Protocol, TypeVar

from veilnet.errors import ConfigError
from veilnet.tasks.challenges import challenge_request
from veilnet.tasks.ocr import OCR_MODEL, OcrChallenge, generate_ocr_challenge, ocr_answer, verify_ocr_answer
from veilnet.tasks.orientation import (
    ORIENTATION_MODEL,
    OrientationAnswer,
    OrientationChallenge,
    OrientationResult,
    generate_orientation_challenge,
    verify_orientation_answer,
)
from veilnet.tasks.verdict import GreedyEvidence, RecountedUsage, Verdict

__all__ = [
    "BEHAVIOURS",
    "CHAT_VERDICTS",
    "Answered",
    "Behaviour",
    "ChatBench",
    "OcrBench",
    "OrientationBench",
    "TaskBench",
    "bench_for",
]

Behaviour = Literal["honest", "empty", "truncate", "cache", "substitute", "inflate-usage"]
BEHAVIOURS: tuple[Behaviour, ...] = ("honest", "empty", "truncate", "cache", "substitute", "inflate-usage")
CHAT_VERDICTS = Path(__file__).parent / "data" / "chat_verdicts.json"
CHAT_MODEL = "SmolLM2-135M-Instruct"
T = TypeVar("T")


@dataclass(frozen=True)
class Answered:
    """One verified answer: the verdict, and the units the miner claimed it delivered."""

    verdict: Verdict
    claimed_units: int


class TaskBench(Protocol):
    task: str
    behaviours: tuple[Behaviour, ...]  # the behaviours that apply to the task

    def answer(self, behaviour: Behaviour, rng: random.Random, memory: dict[str, object]) -> Answered: ...


@cache
def _chat_table() -> dict[str, list[dict[str, object]]]:
    document = json.loads(CHAT_VERDICTS.read_text(encoding="utf-8"))
    table: dict[str, list[dict[str, object]]] = document["verdicts"]
    return table


def _chat_verdict(row: dict[str, object]) -> Verdict:
    bounds = tuple(float(b) for b in row["greedy_bounds"])  # type: ignore[attr-defined]
    recount = int(row["completion_tokens"])  # type: ignore[call-overload]
    return Verdict(
        ok=bool(row["ok"]), quality=float(row["quality"]), reason=row["reason"],  # type: ignore[arg-type]
        checked=len(bounds), usage=RecountedUsage(0, recount, None, None),
        greedy=GreedyEvidence(int(row["greedy_hits"]), bounds) if bounds else None,  # type: ignore[call-overload]
        fisher=float(row["fisher"]), text_positions=int(row["text_positions"]),  # type: ignore[arg-type,call-overload]
    )


@dataclass
class ChatBench:
    task: str = "chat"
    behaviours: tuple[Behaviour, ...] = BEHAVIOURS

    def answer(self, behaviour: Behaviour, rng: random.Random, memory: dict[str, object]) -> Answered:
        challenge_request(CHAT_MODEL, rng)  # the validator's real challenge: drawn as it would be, answered by the table
        rows = _chat_table().get(behaviour)
        if not rows:
            raise ConfigError(f"{CHAT_VERDICTS} holds no verdicts for behaviour {behaviour!r}")
        verdict = _chat_verdict(rng.choice(rows))
        recount = verdict.usage.completion_tokens if verdict.usage is not None else 0
        claimed = 10 * max(1, recount) if behaviour == "inflate-usage" else recount
        return Answered(verdict, claimed)


def _misread(text: str, rate: float, rng: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    return "".join(rng.choice(alphabet) if c.strip() and rng.random() < rate else c for c in text)


def _next(pool: list[T], memory: dict[str, object], rng: random.Random) -> T:
    """The miner's next challenge from ``pool`` (its own shuffled order, no repeat until the pool is spent)."""
    order = memory.get("order")
    if not isinstance(order, list) or not order:
        order = list(range(len(pool)))
        rng.shuffle(order)
        memory["order"] = order
    return pool[int(order.pop())]


@dataclass
class OcrBench:
    task: str = "ocr"
    behaviours: tuple[Behaviour, ...] = ("honest", "empty", "truncate", "cache", "substitute")
    pool: int = 32
    seed: int = 0
    honest_error: float = 0.002
    cheap_error: float = 0.29
    _challenges: list[OcrChallenge] = field(default_factory=list)

    def answer(self, behaviour: Behaviour, rng: random.Random, memory: dict[str, object]) -> Answered:
        if not self._challenges:
            draw = random.Random(self.seed)
            self._challenges = [generate_ocr_challenge(draw) for _ in range(self.pool)]
        challenge = _next(self._challenges, memory, rng)
        previous = str(memory.get("previous", ""))
        memory["previous"] = challenge.truth
        text = {
            "honest": lambda: _misread(challenge.truth, self.honest_error, rng),
            "empty": lambda: "",
            "truncate": lambda: challenge.truth[: len(challenge.truth) // 3],
            "cache": lambda: previous,
            "substitute": lambda: _misread(challenge.truth, self.cheap_error, rng),
        }[behaviour]()
        verdict = verify_ocr_answer(challenge, ocr_answer("sim", 0, OCR_MODEL, text).model_dump())
        return Answered(verdict, 1)


def _shortcut(angle: int, rng: random.Random) -> int:
    """Upright-or-upside-down versus sideways from the text lines' direction; which of the two is a guess."""
    return rng.choice((0, 180)) if angle in (0, 180) else rng.choice((90, 270))


@dataclass
class OrientationBench:
    task: str = "orientation"
    behaviours: tuple[Behaviour, ...] = ("honest", "empty", "truncate", "cache", "substitute")
    pool: int = 8
    seed: int = 0
    _challenges: list[OrientationChallenge] = field(default_factory=list)

    def answer(self, behaviour: Behaviour, rng: random.Random, memory: dict[str, object]) -> Answered:
        if not self._challenges:
            draw = random.Random(self.seed)
            self._challenges = [generate_orientation_challenge(draw, rounds=(1, 1)) for _ in range(self.pool)]
        challenge = _next(self._challenges, memory, rng)
        truth = list(challenge.truth)
        previous = memory.get("previous")
        memory["previous"] = truth
        angles = {
            "honest": lambda: truth,
            "empty": lambda: [],
            "truncate": lambda: truth[: len(truth) // 2],
            "cache": lambda: list(previous) if isinstance(previous, list) else [0] * len(truth),
            "substitute": lambda: [_shortcut(a, rng) for a in truth],
        }[behaviour]()
        answer = OrientationAnswer(id="sim", created=0, model=ORIENTATION_MODEL,
                                   data=[OrientationResult(index=i, angle=a) for i, a in enumerate(angles)])
        return Answered(verify_orientation_answer(challenge, answer.model_dump()), len(truth))


def bench_for(task: str, *, seed: int = 0) -> TaskBench:
    benches: dict[str, type[ChatBench] | type[OcrBench] | type[OrientationBench]] = {
        "chat": ChatBench, "ocr": OcrBench, "orientation": OrientationBench}
    if task not in benches:
        raise ConfigError(f"the simulator covers tasks {', '.join(benches)}; got {task!r}")
    return ChatBench() if task == "chat" else benches[task](seed=seed)  # type: ignore[call-arg]
