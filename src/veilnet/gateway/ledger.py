"""Where every request and every attempt ends up: billing (priced usage), the usage ledger, the key's token
rate, the gateway's metrics, a sample for the validator's organic stream, and each attempt's outcome.

A request opens one :class:`LedgerEntry` when it is admitted and finishes it exactly once, however it ends
(answered, failed, or left by its client): the row is queued at once, so a client that disconnects cannot
lose it. Each attempt at a miner ends in one :class:`~veilnet.gateway.faults.AttemptOutcome`, counted in
``veilnet_gateway_attempts_total`` and handed to the ``on_attempt`` hook (a validator's scores can learn
from organic traffic through it).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from veilnet.gateway.directory import MinerDirectory
from veilnet.gateway.faults import AttemptOutcome
from veilnet.gateway.routing import Candidate
from veilnet.gateway.stats import GatewayStats
from veilnet.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    MinerRequest,
    prompt_text_chars,
)
from veilnet.protocol.usage import LedgerStatus, Usage
from veilnet.store.keys import ApiKey, KeyStore, UsageRow
from veilnet.store.organic import OrganicStream
from veilnet.store.ratelimit import KeyRateLimiter

__all__ = ["Ledger", "LedgerEntry", "estimated_usage", "priced"]

log = logging.getLogger(__name__)


def priced(usage: Usage, candidate: Candidate, request: MinerRequest | None) -> Usage:
    """``usage`` at the miner's prices, its counts bounded by what the request could use: the prompt by the
    model's context, the completion by the request's ``max_tokens`` (and the context) for each of its ``n``
    choices."""
    context = candidate.context_length
    most_completion: int | None = context
    if isinstance(request, ChatCompletionRequest):
        most_completion = min(request.max_completion_tokens or request.max_tokens or context, context) * request.n
    elif isinstance(request, CompletionRequest):
        most_completion = min(request.max_tokens or context, context) * request.n
    most_prompt = context
    if isinstance(request, EmbeddingRequest):
        most_prompt, most_completion = context * (len(request.input) if isinstance(request.input, list) else 1), 0
    return usage.priced(candidate.price_input, candidate.price_output, max_prompt_tokens=most_prompt,
                        max_completion_tokens=most_completion)


def estimated_usage(chunks: int, candidate: Candidate, request: MinerRequest | None = None) -> Usage:
    """What a stream cost when no usage came for it (its client left first, or the miner sent none): one
    completion token per data line relayed (streaming servers send a chunk per token) and one prompt token
    per four characters of the request's text (none when the gateway cannot read it), priced as the miner
    prices tokens."""
    prompt = prompt_text_chars(request) // 4
    return priced(Usage(prompt_tokens=prompt, completion_tokens=chunks, total_tokens=prompt + chunks),
                  candidate, request)


class Ledger:
    def __init__(self, keys: KeyStore, stats: GatewayStats, directory: MinerDirectory, *,
                 ratelimit: KeyRateLimiter | None = None, organic: OrganicStream | None = None,
                 on_attempt: Callable[[AttemptOutcome], None] | None = None) -> None:
        self.keys = keys
        self.stats = stats
        self.directory = directory
        self.ratelimit = ratelimit
        self.organic = organic
        self._on_attempt = on_attempt

    def entry(self, key: ApiKey, generation: str, model: str, started: float, *, sampled: bool) -> LedgerEntry:
        """The ledger entry of a request admitted at ``started`` (``perf_counter``). ``sampled``: whether
        it may go to the validator's organic stream (not when the app denied data collection)."""
        return LedgerEntry(self, key, generation, model, started, sampled)

    def attempt(self, outcome: AttemptOutcome) -> None:
        self.stats.attempt(outcome.miner, self._uid(outcome.miner), outcome.fault)
        if self._on_attempt is not None:
            try:
                self._on_attempt(outcome)
            except Exception:  # a hook's failure is its own: the request goes on
                log.exception("on_attempt hook failed")

    def _uid(self, hotkey: str) -> int | None:
        metagraph = self.directory.metagraph
        return metagraph.uid_of(hotkey) if metagraph is not None else None


class LedgerEntry:
    __slots__ = ("_ledger", "done", "generation", "key", "model", "sampled", "started")

    def __init__(self, ledger: Ledger, key: ApiKey, generation: str, model: str, started: float,
                 sampled: bool) -> None:
        self._ledger = ledger
        self.key = key
        self.generation = generation
        self.model = model
        self.started = started
        self.sampled = sampled
        self.done = False

    def finish(self, candidate: Candidate | None, usage: Usage | None, status: LedgerStatus,
               error: str | None = None, *, model: str | None = None, request: bytes | None = None,
               response: dict[str, Any] | None = None) -> None:
        """Record how the request ended (once; later calls are ignored). ``usage`` already priced;
        ``request``: the bytes sent to the miner that answered (for the organic sample)."""
        if self.done:
            return
        self.done = True
        ledger = self._ledger
        latency = time.perf_counter() - self.started
        prompt = usage.prompt_tokens if usage is not None else 0
        completion = usage.completion_tokens if usage is not None else 0
        model = model or self.model
        if candidate is not None:
            ledger.stats.observe(candidate.hotkey, ledger._uid(candidate.hotkey), latency, status == LedgerStatus.OK,
                                 prompt, completion)
        row = UsageRow(generation_id=self.generation, key_id=self.key.id, model=model,
                       miner=candidate.hotkey if candidate is not None else None, prompt_tokens=prompt,
                       completion_tokens=completion, cost_usd=(usage.cost or 0.0) if usage is not None else 0.0,
                       latency_ms=latency * 1000, status=status.value, error=error)
        ledger.keys.record(row)  # queued at once, so a client that disconnects cannot lose it
        if ledger.ratelimit is not None:
            ledger.ratelimit.add_tokens(self.key.id, prompt + completion)
        organic = ledger.organic
        if organic is not None and candidate is not None and request is not None and self.sampled and organic.draw():
            organic.add(miner=candidate.hotkey, model=model, request=json.loads(request), response=response,
                        latency_ms=row.latency_ms, status=status.value)  # written with others, in the background
