"""Organic answers verified: the gateway passes a sample of the miner-signed organic answers to the
validator's scorers, which verify them as they verify challenge answers, so a miner that answers challenges
honestly and cheats apps (canned text, inflated usage) is caught by the same verdicts and banned the same way.

The sample is drawn when a request is admitted (``rate``, the gateway's ``organic_verify_rate``), so nothing
tells the miner which requests are drawn; the record is written after the app has its answer (the request's
ledger entry finishes after the last byte is sent) and in the background (a :class:`Flusher`), so it never
delays the app. What is written is what the miner signed (:class:`SignedAnswer`): the whole JSON body with its
Epistula headers, or the whole SSE stream with its signature line, and the request's bytes; the scorer checks
the signature and reads the answer from those bytes, so neither the gateway nor Redis can put words in a
miner's mouth. A request whose app denied data collection is verified too, but its record is ``private``: the
scorer deletes it once verified, and it never enters the organic stream challenges replay from.

Chat answers are drawn for the scorers' reference models; answers of the other tasks that judge organic answers
(``Task.audits_organic``: OCR, orientation, relayed by :class:`~veilnet.gateway.tasks.TaskRelay`) for the
tasks the scorers verify. Every record names its task, which picks the scorer's verifier.
"""

from __future__ import annotations

import base64
import json
import logging
import random
from collections.abc import Collection
from types import TracebackType

from redis.exceptions import RedisError

from veilnet.errors import StoreError
from veilnet.scoring import Observation
from veilnet.store.flusher import Flusher
from veilnet.store.validator_pipeline import ChallengeRecord, SignedAnswer, ValidatorPipeline

__all__ = ["OrganicVerifier", "signed_answer"]

log = logging.getLogger(__name__)

MAX_UNWRITTEN = 10_000  # records kept while Redis is away; older ones are dropped beyond it


def signed_answer(fmt: str, body: bytes, request_uuid: str, caller: str,
                  headers: dict[str, str] | None = None) -> SignedAnswer:
    """The signed bytes of an answer as they travel to the scorer."""
    kept = {k: v for k, v in (headers or {}).items() if k.lower().startswith("epistula-")}
    return SignedAnswer(format="stream" if fmt == "stream" else "body", body=base64.b64encode(body).decode(),
                        request_uuid=request_uuid, caller=caller, headers=kept)


class OrganicVerifier:
    """Draw requests (:meth:`draw`, at admission) and add the drawn ones' signed answers (:meth:`add`, after the
    answer is sent); use it with ``async with`` (leaving writes what is left)."""

    def __init__(self, pipeline: ValidatorPipeline, caller: str, *, rate: float, rng: random.Random | None = None,
                 flush_seconds: float = 0.25, models: Collection[str] | None = None,
                 tasks: Collection[str] | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("organic_verify_rate must be within [0, 1]")
        self._pipeline = pipeline
        self.caller = caller
        self._rate = rate
        self._models = frozenset(models) if models is not None else None  # chat models the scorers verify (None: all)
        self._tasks = frozenset(tasks) if tasks is not None else None  # other tasks they verify (None: all)
        self._rng = rng or random.Random()
        self._unwritten: list[ChallengeRecord] = []
        self._writer = Flusher(self.flush, lambda: bool(self._unwritten), interval=flush_seconds,
                               what="organic answers to verify")

    async def __aenter__(self) -> OrganicVerifier:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._writer.aclose()

    def wants(self, model: str, task: str = "chat") -> bool:
        """Whether the scorers verify answers of ``model`` for ``task``: chat's of their reference models, other
        tasks' when they verify the task."""
        if task == "chat":
            return self._models is None or model in self._models
        return self._tasks is None or task in self._tasks

    def draw(self, model: str | None = None, task: str = "chat") -> bool:
        """Whether the next request's answer (of ``model`` for ``task``) is verified (probability ``rate``)."""
        return (self._rate > 0.0 and (model is None or self.wants(model, task))
                and self._rng.random() < self._rate)

    def add(self, *, miner: str, model: str, task: str, request: bytes, signed: SignedAnswer, private: bool,
            elapsed_ms: float | None = None) -> None:
        """Queue one drawn answer for the scorers (needs a running event loop; never waits)."""
        try:
            parsed = json.loads(request)
        except ValueError:
            return  # the gateway's own bytes: cannot happen for a request a miner answered
        max_tokens = parsed.get("max_completion_tokens") or parsed.get("max_tokens") if isinstance(parsed, dict) else None
        observation = Observation(miner=miner, model=model, task=task, outcome="ok", kind="audit",
                                  elapsed_ms=elapsed_ms, max_tokens=max_tokens if isinstance(max_tokens, int) else None)
        self._unwritten.append(ChallengeRecord(observation, parsed, None, None, signed, private))
        if len(self._unwritten) > MAX_UNWRITTEN:
            del self._unwritten[: len(self._unwritten) - MAX_UNWRITTEN]
            log.warning("organic answers to verify: Redis has not taken them for a while, dropped the oldest")
        self._writer.soon()

    async def flush(self) -> None:
        """Write what was queued (kept for the next flush when Redis fails)."""
        batch, self._unwritten = self._unwritten, []
        try:
            await self._pipeline.add_answers(batch)
        except BaseException as exc:  # failed or cancelled: written at the next flush
            self._unwritten[:0] = batch
            if isinstance(exc, RedisError | OSError):
                raise StoreError(f"cannot write organic answers to verify: {exc}") from exc
            raise
