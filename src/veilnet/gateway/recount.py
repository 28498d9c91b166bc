"""The gateway's own token count: apps are billed from it whenever the gateway holds the model's tokenizer.

A miner's usage is a claim. The gateway recounts a chat answer with the model's own tokenizer
(:mod:`veilnet.models.tokenizer`, a tokenizer-only llama.cpp per served model): prompt tokens as the chat
template renders the request's messages and the tools it shows, completion tokens as each choice's text
tokenizes (its content; forced tool calls as the engine's grammar writes them; freely written ones as the
chat template asks for them), plus the end-of-generation token a choice that ended on its own ended with
(what llama.cpp counts, and what the scorer's recount counts). The bill is the smaller of the gateway's count and the claim, per kind
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
from veilnet.models.toolcalls import block_calls_text
from veilnet.protocol.openai import ChatCompletionRequest, MinerRequest
from veilnet.protocol.usage import Usage
from veilnet.tasks.structured import forced_calls_text, forces_calls, shown_tools

__all__ = ["billed_usage", "own_usage"]

log = logging.getLogger(__name__)


async def own_usage(tokenizer: Tokenizer, request: MinerRequest, answer: Mapping[str, Any]) -> tuple[int, int] | None:
    """(prompt, completion) tokens of a chat answer by the model's tokenizer, every choice's completion
    summed; None when it cannot be counted (not a chat request, a choice without countable text, the
    tokenizer failing)."""
    if not isinstance(request, ChatCompletionRequest):
        return None
    choices = answer.get("choices")
    texts = [_generated(request, choice) for choice in choices] if isinstance(choices, list) and choices else [None]
    if any(text is None for text in texts):
        return None
    try:
        messages = [m.model_dump(exclude_none=True) for m in request.messages]
        prompt = await tokenizer.chat_prompt(messages, tools=shown_tools(request))
        completion = 0
        for text, ended in (t for t in texts if t is not None):
            completion += len(await tokenizer.text_tokens(text)) + (1 if ended else 0)
    except VeilnetError as exc:  # the tokenizer's server away: the claim is billed, as without one
        log_event(log, "own token count failed; billing the miner's claim", logging.WARNING, reason=exc.message)
        return None
    return len(prompt), completion


def _generated(request: ChatCompletionRequest, choice: object) -> tuple[str, bool] | None:
    """The text one choice's model generated and whether it ended on its own end of generation: the content,
    forced calls as the engine's grammar writes them, or freely written calls as the chat template asks for
    them after the content; None when there is none to count."""
    if not isinstance(choice, dict) or not isinstance(message := choice.get("message"), dict):
        return None
    finish = choice.get("finish_reason")
    calls = message.get("tool_calls")
    if not calls:
        content = message.get("content")
        return (content, finish == "stop") if isinstance(content, str) else None
    try:
        named = [(str(c["function"]["name"]), str(c["function"]["arguments"])) for c in calls]
    except (TypeError, KeyError):
        return None
    if forces_calls(request):
        forced = forced_calls_text(request, named)
        return None if forced is None else (forced[0], finish == "tool_calls")
    content = message.get("content")
    return block_calls_text(content if isinstance(content, str) else "", named)[0], finish == "tool_calls"


def billed_usage(claim: Usage, own: tuple[int, int] | None) -> Usage:
    """What an app is billed: the smaller of the gateway's count and the miner's claim, per kind."""
    if own is None:
        return claim
    prompt, completion = min(own[0], claim.prompt_tokens), min(own[1], claim.completion_tokens)
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)
