"""Verifying a miner's chat answer against the validator's own reference model.

The reference re-scores the miner's returned tokens: at a random sample of positions it continues the
conversation with the miner's answer up to that position as an assistant prefill (llama.cpp reuses the
cached prefix, so each position costs little more than one token) and asks for the top-k next tokens.
A token outside the reference's top-k (looser at higher temperature), a claimed logprob far from the
reference's, a non-argmax token at temperature 0, usage that does not recount, or text that does not match
the tokens fails the answer.
"""

from __future__ import annotations

import math
import random
from typing import Any

from veilnet.models.engine import ModelEngine
from veilnet.tasks.verdict import Verdict, failed

__all__ = ["verify_chat_answer"]


async def verify_chat_answer(
    reference: ModelEngine,
    request: dict[str, Any],
    response: dict[str, Any],
    *,
    positions: int = 8,
    rng: random.Random | None = None,
    logprob_tolerance: float = 1.0,
    min_quality: float = 0.75,
) -> Verdict:
    """Check ``response`` (a miner's non-streamed chat completion) for ``request`` with ``reference``."""
    rng = rng or random.Random()
    if response.get("model") != request.get("model"):
        return failed(f"answered as model {response.get('model')!r}, asked {request.get('model')!r}")
    try:
        choice = response["choices"][0]
        content = choice["message"]["content"] or ""
        tokens = choice["logprobs"]["content"]
        usage = response["usage"]
    except (KeyError, IndexError, TypeError):
        return failed("answer lacks choices, message, logprobs or usage")
    if "".join(t["token"] for t in tokens) != content:
        return failed("the returned tokens do not spell the returned text")
    if usage.get("completion_tokens") != len(tokens):
        return failed(f"usage claims {usage.get('completion_tokens')} completion tokens, {len(tokens)} returned")
    max_tokens = request.get("max_tokens") or request.get("max_completion_tokens")
    if max_tokens is not None and len(tokens) > max_tokens:
        return failed(f"{len(tokens)} tokens returned for max_tokens {max_tokens}")
    if choice.get("finish_reason") == "length" and max_tokens is not None and len(tokens) != max_tokens:
        return failed("finish_reason 'length' before max_tokens was reached (premature end)")

    raw_temperature = request.get("temperature")
    temperature = float(raw_temperature) if isinstance(raw_temperature, int | float) else 1.0
    top_k = 20 if temperature <= 1.0 else 40
    greedy = temperature == 0.0
    base = {"model": request["model"], "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": top_k}
    messages = list(request["messages"])

    first = await reference.chat({**base, "messages": messages})
    if first.get("usage", {}).get("prompt_tokens") != usage.get("prompt_tokens"):
        return failed(
            f"usage claims {usage.get('prompt_tokens')} prompt tokens; the reference counts "
            f"{first.get('usage', {}).get('prompt_tokens')}"
        )
    if not tokens:
        return Verdict(ok=True, quality=1.0, reason=None, checked=0)
    chosen = sorted(rng.sample(range(len(tokens)), min(positions, len(tokens))))
    passed = 0
    reasons: list[str] = []
    for index in chosen:
        prefix = "".join(t["token"] for t in tokens[:index])
        if index == 0:
            answer = first
        else:
            answer = await reference.chat({**base, "messages": [*messages, {"role": "assistant", "content": prefix}]})
        top = answer["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        ranked = {t["token"]: t["logprob"] for t in top}
        token = tokens[index]["token"]
        if token not in ranked:
            reasons.append(f"position {index}: token {token!r} is outside the reference's top {top_k}")
            continue
        if greedy and token != top[0]["token"]:
            reasons.append(f"position {index}: temperature 0 but {token!r} is not the reference's argmax")
            continue
        claimed = tokens[index].get("logprob")
        if isinstance(claimed, int | float) and math.isfinite(claimed) and abs(claimed - ranked[token]) > logprob_tolerance:
            reasons.append(f"position {index}: claimed logprob {claimed:.2f}, reference {ranked[token]:.2f}")
            continue
        passed += 1
    quality = passed / len(chosen)
    if quality < min_quality:
        return failed("; ".join(reasons[:3]), quality=quality, checked=len(chosen))
    return Verdict(ok=True, quality=quality, reason="; ".join(reasons[:3]) or None, checked=len(chosen))
