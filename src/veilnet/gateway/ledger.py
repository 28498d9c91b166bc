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
from collections.abc import Callable, Mapping
from typing import Any

from veilnet.gateway.directory import MinerDirectory
from veilnet.gateway.faults import AttemptOutcome
from veilnet.gateway.routing import Candidate
from veilnet.gateway.stats import GatewayStats
from veilnet.gateway.verification import OrganicVerifier, signed_answer
from veilnet.models.tokenizer import Tokenizer
from veilnet.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    MinerRequest,
    TextPart,
    prompt_text_chars,
)
from veilnet.protocol.usage import LedgerStatus, Usage
from veilnet.store.keys import ApiKey, KeyStore, UsageRow
from veilnet.store.organic import OrganicStream
from veilnet.store.ratelimit import KeyRateLimiter
from veilnet.store.reservations import TEMPLATE_TOKENS_PER_MESSAGE, TEMPLATE_TOKENS_PER_REQUEST, Reservation
from veilnet.store.validator_pipeline import SignedAnswer

__all__ = ["Ledger", "LedgerEntry", "estimated_usage", "most_cost", "priced", "prompt_bound", "token_bounds"]

log = logging.getLogger(__name__)


def prompt_bound(request: MinerRequest | None) -> int | None:
    """The most prompt tokens a request's text can be: a token per UTF-8 byte (a byte-level BPE token, as every
    model veilnet serves uses, covers at least one byte), ``TEMPLATE_TOKENS_PER_MESSAGE`` per message (or per
    embedding input) and ``TEMPLATE_TOKENS_PER_REQUEST`` (a template's default system prompt); None when it
    holds more than text (an image, audio) or there is no request to read."""
    if isinstance(request, ChatCompletionRequest):
        total = 0
        for message in request.messages:
            content = message.content
            if isinstance(content, list):
                if not all(isinstance(part, TextPart) for part in content):
                    return None
                total += sum(len(part.text.encode()) for part in content if isinstance(part, TextPart))
            elif content is not None:
                total += len(content.encode())
            total += len(message.name.encode()) if message.name else 0
        return total + TEMPLATE_TOKENS_PER_MESSAGE * len(request.messages) + TEMPLATE_TOKENS_PER_REQUEST
    if isinstance(request, CompletionRequest):
        return len(request.prompt.encode()) + TEMPLATE_TOKENS_PER_REQUEST
    if isinstance(request, EmbeddingRequest):
        inputs = [request.input] if isinstance(request.input, str) else request.input
        return (sum(len(text.encode()) for text in inputs) + TEMPLATE_TOKENS_PER_MESSAGE * len(inputs)
                + TEMPLATE_TOKENS_PER_REQUEST)
    return None


def token_bounds(candidate: Candidate, request: MinerRequest | None) -> tuple[int, int]:
    """The most prompt and completion tokens a request can be billed at ``candidate``: the prompt by the
    model's context (per input, for embeddings) and by its text (:func:`prompt_bound`), the completion by the
    request's ``max_tokens`` and the context, for each of its ``n`` choices."""
    context = candidate.context_length
    most_completion = context
    if isinstance(request, ChatCompletionRequest):
        most_completion = min(request.max_completion_tokens or request.max_tokens or context, context) * request.n
    elif isinstance(request, CompletionRequest):
        most_completion = min(request.max_tokens or context, context) * request.n
    most_prompt = context
    if isinstance(request, EmbeddingRequest):
        most_prompt, most_completion = context * (len(request.input) if isinstance(request.input, list) else 1), 0
    text = prompt_bound(request)
    return (most_prompt if text is None else min(most_prompt, text)), most_completion


def priced(usage: Usage, candidate: Candidate, request: MinerRequest | None) -> Usage:
    """``usage`` at the miner's prices, its counts bounded by what the request could use (:func:`token_bounds`):
    a miner cannot bill more tokens than the request could take, nor more than the request's hold covers."""
    most_prompt, most_completion = token_bounds(candidate, request)
    return usage.priced(candidate.price_input, candidate.price_output, max_prompt_tokens=most_prompt,
                        max_completion_tokens=most_completion)


def most_cost(candidate: Candidate, request: MinerRequest | None) -> float:
    """The most a request can be billed at ``candidate`` (USD): what its credit hold covers."""
    most_prompt, most_completion = token_bounds(candidate, request)
    return (most_prompt * candidate.price_input + most_completion * candidate.price_output) / 1_000_000


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
                 on_attempt: Callable[[AttemptOutcome], None] | None = None,
                 verifier: OrganicVerifier | None = None, tokenizers: Mapping[str, Tokenizer] | None = None) -> None:
        self.keys = keys
        self.tokenizers: Mapping[str, Tokenizer] = tokenizers or {}  # the gateway's own count, per model
        self.verifier = verifier
        self.stats = stats
        self.directory = directory
        self.ratelimit = ratelimit
        self.organic = organic
        self._on_attempt = on_attempt

    def entry(self, key: ApiKey, generation: str, model: str, started: float, *, sampled: bool,
              verifiable: bool = False, private: bool = False, task: str = "chat") -> LedgerEntry:
        """The ledger entry of a request for ``task`` admitted at ``started`` (``perf_counter``). ``sampled``:
        whether it may go to the validator's organic stream (not when the app denied data collection);
        ``verifiable``: whether its answer may be passed to the validator's scorers (drawn here, at admission),
        ``private`` when the app denied data collection (held only until verified)."""
        audited = verifiable and self.verifier is not None and self.verifier.draw(model, task)
        return LedgerEntry(self, key, generation, model, started, sampled, audited, private, task)

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
    __slots__ = ("_hold", "_ledger", "audited", "done", "generation", "key", "model", "private", "sampled",
                 "started", "task")

    def __init__(self, ledger: Ledger, key: ApiKey, generation: str, model: str, started: float,
                 sampled: bool, audited: bool = False, private: bool = False, task: str = "chat") -> None:
        self._ledger = ledger
        self.key = key
        self.generation = generation
        self.model = model
        self.started = started
        self.sampled = sampled
        self.audited = audited  # its answer goes to the validator's scorers (OrganicVerifier)
        self.private = private
        self.task = task  # the task its answer is verified as
        self.done = False
        self._hold: Reservation | None = None

    @property
    def held_usd(self) -> float:
        """The credit held for this request now (0 once it is settled or released)."""
        hold = self._hold
        return hold.amount_usd if hold is not None and hold.state == "held" else 0.0

    def hold(self, candidate: Candidate, request: MinerRequest | None) -> None:
        """Hold the most this request can cost at ``candidate`` (:func:`most_cost`) against its key's credit and
        budget before the miner is asked (PaymentRequired when the key cannot cover it, and nothing is held).
        A hold already as large is kept; a smaller one is swapped for the larger in one step (no await
        between), so concurrent requests of a key never hold more than it has."""
        amount = most_cost(candidate, request)
        if self.held_usd >= amount:
            return
        if self._hold is not None:
            self._hold.release()
            self._hold = None
        self._hold = self._ledger.keys.reserve(self.key, amount)

    def tokenizer(self, model: str) -> Tokenizer | None:
        """The tokenizer the gateway counts ``model``'s tokens with (None: it bills the miner's claim)."""
        return self._ledger.tokenizers.get(model)

    def signed(self, fmt: str, body: bytes, request_uuid: str, headers: dict[str, str] | None = None,
               ) -> SignedAnswer | None:
        """The miner-signed answer to pass to the scorers; None when this request was not drawn."""
        verifier = self._ledger.verifier
        if not self.audited or verifier is None or not request_uuid:
            return None
        return signed_answer(fmt, body, request_uuid, verifier.caller, headers)

    def end(self, status: LedgerStatus, error: str) -> None:
        """Finish the request if nothing did (it ended by an error no path recorded, or its response was
        never sent): an unbilled row, and its hold released."""
        if not self.done:
            self.finish(None, None, status, error[:200])

    def finish(self, candidate: Candidate | None, usage: Usage | None, status: LedgerStatus,
               error: str | None = None, *, model: str | None = None, request: bytes | None = None,
               response: dict[str, Any] | None = None, signed: SignedAnswer | None = None) -> None:
        """Record how the request ended (once; later calls are ignored). ``usage`` already priced;
        ``request``: the bytes sent to the miner that answered (for the organic sample and verification);
        ``signed``: the miner-signed answer of a drawn request (:meth:`signed`), passed to the scorers."""
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
        hold = self._hold
        if hold is not None and hold.state == "held":
            hold.settle(row)  # the hold becomes the row's cost, queued at once like any row
        else:
            ledger.keys.record(row)  # queued at once, so a client that disconnects cannot lose it
        if ledger.ratelimit is not None:
            ledger.ratelimit.add_tokens(self.key.id, prompt + completion)
        verifier = ledger.verifier
        if verifier is not None and signed is not None and candidate is not None and request is not None \
                and status == LedgerStatus.OK and verifier.wants(model, self.task):
            verifier.add(miner=candidate.hotkey, model=model, task=self.task, request=request, signed=signed,
                         private=self.private, elapsed_ms=row.latency_ms)
        organic = ledger.organic
        if organic is not None and candidate is not None and request is not None and self.sampled and organic.draw():
            organic.add(miner=candidate.hotkey, model=model, request=json.loads(request), response=response,
                        latency_ms=row.latency_ms, status=status.value)  # written with others, in the background
