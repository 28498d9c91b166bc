"""The validator's roles talk through Redis streams, so each runs (and scales) on its own.

``veilnet:validator:<hotkey>:<netuid>:answers``: what the challenger got back — one entry per challenge
(field ``record``: the observation, and the request and answer when there is an answer to verify). Scorers
read it in the consumer group ``scorers`` (each entry to one scorer; entries a dead scorer held are claimed
by another after ``claim_after_ms``) and acknowledge what they have recorded.

``veilnet:validator:<hotkey>:<netuid>:observations``: scored observations (field ``observation``), which the
weights role folds into the score states at each epoch and then deletes.

The gateway puts a sample of organic answers on the answers stream too (:class:`SignedAnswer`: the bytes the
miner signed, which the scorer checks and reads the answer from). An entry marked ``private`` (its app denied
data collection) is deleted from the stream once its observation is recorded.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from typing import Any, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict

from veilnet.scoring import Observation
from veilnet.store.redis import KeySpace

__all__ = ["ChallengeRecord", "SignedAnswer", "ValidatorPipeline"]

GROUP = "scorers"
MAXLEN = 100_000


class SignedAnswer(BaseModel):
    """An organic answer as the miner signed it: ``body`` (base64) is the whole JSON body (``format`` "body",
    with the response's Epistula ``headers``) or the whole SSE stream ending in its signature line ("stream"),
    answering the request ``request_uuid`` that ``caller`` (the gateway's hotkey) signed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["body", "stream"]
    body: str
    request_uuid: str
    caller: str
    headers: dict[str, str] = {}


@dataclass(frozen=True)
class ChallengeRecord:
    observation: Observation
    request: dict[str, Any] | None = None  # set when there is an answer to verify
    answer: dict[str, Any] | None = None
    truth: Any = None  # what the challenge knows (JSON; the task's verifier reads it), None for reference-checked tasks
    signed: SignedAnswer | None = None  # organic: the miner-signed answer (``answer`` is read from it)
    private: bool = False  # organic with data collection denied: deleted once recorded

    def to_json(self) -> str:
        return json.dumps({"observation": self.observation.to_dict(), "request": self.request, "answer": self.answer,
                           "truth": self.truth,
                           "signed": self.signed.model_dump() if self.signed is not None else None,
                           "private": self.private})

    @classmethod
    def from_json(cls, raw: str | bytes) -> ChallengeRecord:
        data = json.loads(raw)
        signed = data.get("signed")
        return cls(Observation.from_dict(data["observation"]), data.get("request"), data.get("answer"), data.get("truth"),
                   SignedAnswer.model_validate(signed) if signed is not None else None, bool(data.get("private")))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class ValidatorPipeline:
    def __init__(self, redis: aioredis.Redis, validator: str, netuid: int, *, consumer: str | None = None,
                 claim_after_ms: int = 120_000) -> None:
        self._redis = redis
        keys = KeySpace(f"veilnet:validator:{validator}:{netuid}")
        self.answers = keys("answers")
        self.observations = keys("observations")
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self._claim_after_ms = claim_after_ms
        self._group_ready = False

    async def add_answer(self, record: ChallengeRecord) -> None:
        await self._redis.xadd(self.answers, {"record": record.to_json()},  # type: ignore[arg-type]
                               maxlen=MAXLEN, approximate=True)

    async def add_answers(self, records: list[ChallengeRecord]) -> None:
        """Add several answers in one round trip."""
        if not records:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for record in records:
                pipe.xadd(self.answers, {"record": record.to_json()},  # type: ignore[arg-type]
                          maxlen=MAXLEN, approximate=True)
            await pipe.execute()

    async def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            await self._redis.xgroup_create(self.answers, GROUP, id="0", mkstream=True)
        except aioredis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    async def claim_answers(self, count: int = 4, block_ms: int = 1000) -> list[tuple[str, ChallengeRecord]]:
        """Up to ``count`` answers for this scorer: first any a silent scorer left unacknowledged for too long,
        else new ones (waiting up to ``block_ms``). A Redis that came back empty (restarted without
        persistence) has lost the consumer group: it is created again."""
        try:
            return await self._claim_answers(count, block_ms)
        except aioredis.ResponseError as exc:
            if not str(exc).startswith("NOGROUP"):  # Redis's error code for a missing stream or group
                raise
            self._group_ready = False
            return await self._claim_answers(count, block_ms)

    async def _claim_answers(self, count: int, block_ms: int) -> list[tuple[str, ChallengeRecord]]:
        await self._ensure_group()
        _, stale, *_ = await self._redis.xautoclaim(self.answers, GROUP, self.consumer,
                                                    min_idle_time=self._claim_after_ms, count=count)
        entries = list(stale or [])
        if not entries:
            reply: Any = await self._redis.xreadgroup(GROUP, self.consumer, {self.answers: ">"}, count=count,
                                                      block=block_ms)
            # RESP3 answers {stream: entries}, RESP2 [[stream, entries]]
            streams = reply.values() if isinstance(reply, dict) else [item[1] for item in reply or []]
            entries = [entry for stream_entries in streams for entry in stream_entries]
        out = []
        for entry_id, fields in entries:
            if not fields:
                continue
            raw = {_text(k): v for k, v in fields.items()}
            out.append((_text(entry_id), ChallengeRecord.from_json(raw["record"])))
        return out

    async def record(self, entry_id: str, observation: Observation, *, forget_answer: bool = False) -> None:
        """Store the scored observation and acknowledge its answer, in one transaction; ``forget_answer``:
        delete the answer's entry too (a private organic answer is held only until verified)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            self._add_observation(pipe, observation)
            pipe.xack(self.answers, GROUP, entry_id)
            if forget_answer:
                pipe.xdel(self.answers, entry_id)
            await pipe.execute()

    async def add_observation(self, observation: Observation) -> None:
        await self._add_observation(self._redis, observation)

    async def add_observations(self, observations: list[Observation]) -> None:
        """Store several observations in one round trip."""
        if not observations:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for observation in observations:
                self._add_observation(pipe, observation)
            await pipe.execute()

    def _add_observation(self, target: Any, observation: Observation) -> Any:
        return target.xadd(self.observations, {"observation": json.dumps(observation.to_dict())},
                           maxlen=MAXLEN, approximate=True)

    async def observation_entries(self) -> list[tuple[str, Observation | None]]:
        """Every stored observation by its entry id (None: an empty entry, only to :meth:`forget`)."""
        entries: Any = await self._redis.xrange(self.observations, "-", "+")
        out: list[tuple[str, Observation | None]] = []
        for entry_id, fields in entries or []:
            raw = {_text(k): v for k, v in (fields or {}).items()}
            observation = Observation.from_dict(json.loads(raw["observation"])) if "observation" in raw else None
            out.append((_text(entry_id), observation))
        return out

    async def take_observations(self) -> tuple[list[Observation], list[str]]:
        """Every stored observation, with the ids to :meth:`forget` once they are folded."""
        entries = await self.observation_entries()
        return [o for _, o in entries if o is not None], [entry_id for entry_id, _ in entries]

    async def forget(self, ids: list[str]) -> None:
        for start in range(0, len(ids), 1000):
            await self._redis.xdel(self.observations, *ids[start:start + 1000])
