"""The gateway's own token count: apps are billed from it whenever the gateway holds the model's tokenizer.

A miner's usage is a claim. The gateway recounts a chat answer with the model's own tokenizer
(:mod:`veilnet.models.tokenizer`, a tokenizer-only llama.cpp per served model): prompt tokens as the chat
template renders the request's messages, completion tokens as the answer's text tokenizes, plus the
end-of-generation token an answer that stopped on its own ended with (what llama.cpp counts, and what the
scorer's recount counts). The bill is the smaller of the gateway's count and the claim, per kind
(:func:`billed_usage`): an inflated claim bills nothing extra (and fails verification at the scorer), an
honest miner whose count is lower than the gateway's bills what it claimed. Without the tokenizer (another
model, a non-chat request, a tokenizer that failed) the claim is billed, bounded by what the request could
use (:func:`veilnet.gateway.ledger.priced`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from veilnet.errors import VeilnetError
from veilnet.logs import log_event
from veilnet.models.tokenizer import Tokenizer
from veilnet.protocol.openai import ChatCompletionRequest, MinerRequest
from veilnet.protocol.usage import Usage

__all__ = ["billed_usage", "own_usage"]

log = logging.getLogger(__name__)


async def own_usage(tokenizer: Tokenizer, request: MinerRequest, answer: Mapping[str, Any]) -> tuple[int, int] | None:
    """(prompt, completion) tokens of a chat answer by the model's tokenizer; None when it cannot be counted
    (not a chat request, an answer without text, the tokenizer failing)."""
    if not isinstance(request, ChatCompletionRequest):
        return None
    choices = answer.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    message = choice.get("message") if choice is not None else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str) or choice is None:
        return None
    try:
        prompt = await tokenizer.chat_prompt([m.model_dump(exclude_none=True) for m in request.messages])
        text = await tokenizer.text_tokens(content)
    except VeilnetError as exc:  # the tokenizer's server away: the claim is billed, as without one
        log_event(log, "own token count failed; billing the miner's claim", logging.WARNING, reason=exc.message)
        return None
    return len(prompt), len(text) + (1 if choice.get("finish_reason") == "stop" else 0)


def billed_usage(claim: Usage, own: tuple[int, int] | None) -> Usage:
    """What an app is billed: the smaller of the gateway's count and the miner's claim, per kind."""
    if own is None:
        return claim
    prompt, completion = min(own[0], claim.prompt_tokens), min(own[1], claim.completion_tokens)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
