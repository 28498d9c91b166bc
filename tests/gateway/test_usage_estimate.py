"""What a stream whose client left early is billed when no usage line came (pure)."""

from __future__ import annotations

import pytest

from veilnet.gateway.routing import Candidate
from veilnet.gateway.service import estimated_usage

MINER = Candidate("m", "http://m", score=1.0, price_input=1.0, price_output=2.0, context_length=4096)


def test_a_token_per_chunk_and_per_four_characters_of_text() -> None:
    chat = {"messages": [{"role": "system", "content": "x" * 40},
                         {"role": "user", "content": [{"type": "text", "text": "y" * 20},
                                                      {"type": "image_url", "image_url": {"url": "data:" + "z" * 9000}}]}]}
    usage = estimated_usage(7, MINER, chat)
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (15, 7, 22)
    assert usage["cost"] == pytest.approx((15 * 1.0 + 7 * 2.0) / 1e6)  # an image's bytes are not text
    assert estimated_usage(3, MINER, {"prompt": ["a" * 8, "b" * 8]})["prompt_tokens"] == 4
    assert estimated_usage(3, MINER, {"prompt": "a" * 9})["prompt_tokens"] == 2
    sealed = estimated_usage(5, MINER)  # the gateway cannot read a sealed prompt: completion tokens only
    assert (sealed["prompt_tokens"], sealed["completion_tokens"], sealed["cost"]) == (0, 5, pytest.approx(10 / 1e6))
