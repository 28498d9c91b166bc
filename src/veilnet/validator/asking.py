"""One challenge sent to a miner exactly as the gateway sends an organic request, and its answer read back.

The request goes through :class:`~veilnet.relay.MinerClient` (the gateway's class: the same encoding, the same
headers, the same Epistula signer, the same HTTP client), streamed or not as the request says. The answer's
signature must verify for the miner's hotkey (an unsigned, mis-signed or malformed answer is a failed
verification, not a network error); a streamed answer is put back together as the whole answer it stands
for (:func:`veilnet.tasks.stream.assemble_chat_stream`), so one verifier reads both.
"""

from __future__ import annotations

import json
import logging
import math
import time
from typing import Any

from bittensor_wallet import Keypair
from pydantic import BaseModel, JsonValue

from veilnet.chain.types import NeuronInfo
from veilnet.errors import VeilnetError
from veilnet.logs import log_event
from veilnet.protocol.epistula import verify_response, verify_stream
from veilnet.protocol.openai import ChatCompletionRequest, EmbeddingRequest
from veilnet.relay import MinerClient, MinerDeadlines, RelayClient, RelayError, RelayResponse
from veilnet.scoring import Observation, Outcome
from veilnet.store.organic import RequestCounter
from veilnet.store.validator_pipeline import ChallengeRecord
from veilnet.tasks.interface import Challenge, ChallengeTools
from veilnet.tasks.registry import task_named
from veilnet.tasks.stream import assemble_sse_body

__all__ = ["challenge_client", "draw_challenge", "send_challenge", "terms_failure"]

log = logging.getLogger(__name__)


def challenge_client(keypair: Keypair, relay: RelayClient, counts: RequestCounter | None = None, *,
                     timeout: float = 60.0) -> MinerClient:
    """The MinerClient challenges go through: the gateway's class over ``relay`` (a RelayClient like the
    gateway's), counting each request sent in ``counts`` (this validator's synthetic requests per miner)."""
    return MinerClient(keypair, relay, MinerDeadlines(total=timeout, first_byte=timeout, idle=min(30.0, timeout)),
                       on_send=counts.count if counts is not None else None)


async def draw_challenge(task: str, tools: ChallengeTools) -> Challenge[Any] | None:
    """A challenge drawn by ``task``'s generator; None, logged, when it cannot be drawn (the validator's engine
    lacks a model the task writes with, a plugin's generator fails): that must not stop a challenger."""
    try:
        return await task_named(task).challenge(tools)
    except Exception as exc:
        reason = exc.message if isinstance(exc, VeilnetError) else f"{type(exc).__name__}: {exc}"
        log_event(log, "cannot draw a challenge", logging.ERROR, task=task, model=tools.model, reason=reason)
        return None


def terms_failure(hotkey: str) -> Observation:
    """A reliability failure for a miner whose ``/capacity`` (its terms) could not be read or was invalid."""
    return Observation(miner=hotkey, model="", task="terms", outcome="error", kind="terms")


async def _read(response: RelayResponse) -> tuple[bytes, float | None]:
    """The whole body, and when (perf_counter) its first byte came (None: it had none)."""
    first: float | None = None
    parts = []
    async for block in response.blocks():
        if first is None and block:
            first = time.perf_counter()
        parts.append(block)
    return b"".join(parts), first


async def send_challenge(miners: MinerClient, neuron: NeuronInfo, request: BaseModel, *, task: str, path: str,
                         units: float = 0.0, truth: JsonValue = None) -> ChallengeRecord:
    """Send ``request`` (task ``task``'s request document, served on ``path``) to ``neuron`` and record what came
    back: the observation (outcome, the answer's time, the units it delivered: chat, its completion tokens up to
    the length asked for; other tasks, the request's ``units``; the time to first token for a streamed answer)
    and, when there is an answer to verify, the request, the answer and what the challenge knows (``truth``)."""
    assert neuron.axon is not None
    streamed = bool(getattr(request, "stream", False))
    model = str(getattr(request, "model", ""))

    def seen(outcome: Outcome, **details: Any) -> ChallengeRecord:
        return ChallengeRecord(Observation(miner=neuron.hotkey, model=model, task=task, outcome=outcome, **details))

    start = time.perf_counter()
    try:
        if isinstance(request, ChatCompletionRequest | EmbeddingRequest):
            uuid, response = await miners.exchange(neuron.axon.url, neuron.hotkey, request)
        else:
            uuid, response = await miners.post_with_uuid(
                neuron.axon.url, neuron.hotkey, path, request.model_dump_json(exclude_unset=True).encode())
        try:
            if response.status != 200:
                return seen("rate_limited" if response.status == 429 else "error")
            content, first_byte = await _read(response)
        finally:
            response.release()
    except TimeoutError:
        return seen("timeout")
    except RelayError:
        return seen("error")
    elapsed = time.perf_counter() - start
    caller = miners.keypair.ss58_address
    try:
        if streamed:
            body = verify_stream(content, request_uuid=uuid, caller=caller, signer=neuron.hotkey)
            answer: Any = assemble_sse_body(body)
        else:
            verify_response(response.headers, content, request_uuid=uuid, caller=caller,
                            expected_signer=neuron.hotkey)
            answer = json.loads(content)
        if not isinstance(answer, dict):
            raise TypeError("the answer is not a JSON object")
        completion_tokens = int(answer["usage"]["completion_tokens"]) if task == "chat" else 0
    except (VeilnetError, ValueError, KeyError, TypeError):
        return seen("ok", verified=False, quality=0.0)
    sent = request.model_dump(mode="json", exclude_unset=True)
    if task != "chat":
        return ChallengeRecord(seen("ok", elapsed_ms=elapsed * 1000, units=max(0, math.ceil(units))).observation,
                               sent, answer, truth)
    # it delivered at most what was asked for; a whole answer has no time to first token
    asked = sent.get("max_completion_tokens") or sent.get("max_tokens")
    max_tokens = asked if isinstance(asked, int) else None
    delivered = min(completion_tokens, max_tokens) if max_tokens is not None else completion_tokens
    ttft = (first_byte - start) * 1000 if streamed and first_byte is not None else None
    observation = seen("ok", elapsed_ms=elapsed * 1000, ttft_ms=ttft, completion_tokens=completion_tokens,
                       max_tokens=max_tokens, units=max(0, delivered)).observation
    return ChallengeRecord(observation, sent, answer, truth)
