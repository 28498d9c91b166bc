"""Organic outcomes feed the validator's scores: each attempt the gateway made at a miner becomes an
observation of kind ``organic`` on the validator's observations stream, so a miner that advertises capacity or
a low price and then refuses the work apps send it loses reliability exactly as if it refused a challenge.

What counts (:func:`organic_observation`): a served attempt is ``ok``; the miner's own failures (5xx, a
deadline missed, a broken or unsigned answer) are ``error``; ``busy`` answers (429, or 503
with Retry-After) are ``rate_limited`` failures too — the gateway then skips that miner for the pause it asked
for, so an honest miner at capacity pays about one failure per pause while a miner refusing everything pays
one for every pause. The client's, the gateway's and a dependency's faults count nothing. Organic outcomes
count for reliability only: the gateway cannot yet recount an answer's tokens, so speed comes from the
validator's own measurements.

:class:`OrganicOutcomes` is the gateway's ``on_attempt`` hook: it keeps a uniform sample of the attempts
(``sample_rate``, the gateway's ``organic_sample_rate``: reliability is a ratio, which a uniform sample keeps,
and a busy gateway must not flood the observations stream), collects their observations in process and writes
them in batches (one Redis pipeline a second, through a :class:`~veilnet.store.flusher.Flusher`), so no request
waits on Redis and an outage loses nothing until it ends.
"""

from __future__ import annotations

import random
from types import TracebackType

from redis.exceptions import RedisError

from veilnet.errors import StoreError
from veilnet.gateway.faults import AttemptOutcome, Fault
from veilnet.scoring import Observation, Outcome
from veilnet.store.flusher import Flusher
from veilnet.store.validator_pipeline import ValidatorPipeline

__all__ = ["OrganicOutcomes", "organic_observation"]

MAX_UNWRITTEN = 100_000  # observations kept while Redis is away; older ones are dropped beyond it


def organic_observation(outcome: AttemptOutcome) -> Observation | None:
    """The observation an attempt is worth (None: not the miner's doing)."""
    result: Outcome
    if outcome.fault is None:
        if outcome.error is not None:  # abandoned: its client left, which says nothing about the miner
            return None
        result = "ok"
    elif outcome.fault is Fault.BUSY:
        result = "rate_limited"
    elif outcome.fault is Fault.MINER:
        result = "error"
    else:
        return None
    # the task is not told apart: organic outcomes count for reliability, which is the miner's across tasks
    return Observation(miner=outcome.miner, model=outcome.model, task="chat", outcome=result, kind="organic",
                       organic=True)


class OrganicOutcomes:
    """Call it with each :class:`AttemptOutcome`; use it with ``async with`` (leaving writes what is left)."""

    def __init__(self, pipeline: ValidatorPipeline, *, sample_rate: float = 1.0, flush_seconds: float = 1.0,
                 rng: random.Random | None = None) -> None:
        self._pipeline = pipeline
        self._sample_rate = sample_rate
        self._rng = rng or random.Random()
        self._unwritten: list[Observation] = []
        self._writer = Flusher(self.flush, lambda: bool(self._unwritten), interval=flush_seconds,
                               what="organic outcomes")

    async def __aenter__(self) -> OrganicOutcomes:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._writer.aclose()

    def __call__(self, outcome: AttemptOutcome) -> None:
        observation = organic_observation(outcome)
        if observation is None or (self._sample_rate < 1.0 and self._rng.random() >= self._sample_rate):
            return
        self._unwritten.append(observation)
        if len(self._unwritten) > MAX_UNWRITTEN:
            del self._unwritten[: len(self._unwritten) - MAX_UNWRITTEN]
        self._writer.soon()

    async def flush(self) -> None:
        """Write what was collected (kept for the next flush when Redis fails)."""
        batch, self._unwritten = self._unwritten, []
        try:
            await self._pipeline.add_observations(batch)
        except BaseException as exc:  # failed or cancelled: written at the next flush
            self._unwritten[:0] = batch
            if isinstance(exc, RedisError | OSError):
                raise StoreError(f"cannot write organic outcomes: {exc}") from exc
            raise
