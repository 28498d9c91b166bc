"""What a stream is billed when no usage came for it, and how far a miner's reported usage is believed (pure)."""

from __future__ import annotations

import pytest

from veilnet.gateway.ledger import estimated_usage, most_cost, priced, prompt_bound
from veilnet.gateway.routing import Candidate
from veilnet.protocol.openai import ChatCompletionRequest, CompletionRequest
from veilnet.protocol.usage import Usage

MINER = Candidate("m", "http://m", score=1.0, price_input=1.0, price_output=2.0, context_length=4096)


def test_a_token_per_chunk_and_per_four_characters_of_text() -> None:
    chat = ChatCompletionRequest.model_validate({"model": "m", "messages": [
        {"role": "system", "content": "x" * 40},
        {"role": "user", "content": [{"type": "text", "text": "y" * 20},
                                     {"type": "image_url", "image_url": {"url": "data:" + "z" * 9000}}]}]})
    usage = estimated_usage(7, MINER, chat)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (15, 7, 22)
    assert usage.cost == pytest.approx((15 * 1.0 + 7 * 2.0) / 1e6)  # an image's bytes are not text
    assert estimated_usage(3, MINER, CompletionRequest(model="m", prompt="a" * 9)).prompt_tokens == 2
    sealed = estimated_usage(5, MINER)  # the gateway cannot read a sealed prompt: completion tokens only
    assert (sealed.prompt_tokens, sealed.completion_tokens, sealed.cost) == (0, 5, pytest.approx(10 / 1e6))


def test_a_miner_cannot_bill_more_tokens_than_the_request_could_use() -> None:
    asked = ChatCompletionRequest.model_validate({"model": "m", "max_tokens": 16,
                                                  "messages": [{"role": "user", "content": "hi"}]})
    inflated = Usage(prompt_tokens=10**9, completion_tokens=10**9)
    billed = priced(inflated, MINER, asked)
    # the prompt's text (2 bytes), 16 template tokens for its message and 64 for the request; its max_tokens
    assert (billed.prompt_tokens, billed.completion_tokens) == (82, 16)
    assert billed.cost == pytest.approx((82 * 1.0 + 16 * 2.0) / 1e6)
    assert billed.cost == pytest.approx(most_cost(MINER, asked))  # never more than the request held
    pictured = ChatCompletionRequest.model_validate({"model": "m", "max_tokens": 16, "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]})
    assert prompt_bound(pictured) is None  # an image is no text: the context bounds its prompt
    assert priced(inflated, MINER, pictured).prompt_tokens == 4096
    honest = priced(Usage(prompt_tokens=9, completion_tokens=12), MINER, asked)
    assert (honest.prompt_tokens, honest.completion_tokens, honest.total_tokens) == (9, 12, 21)
