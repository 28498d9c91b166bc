"""An embedded llama.cpp server closed right after it opened never hangs the process: xllamacpp's Server
joins its task loop's thread when collected, and a loop that had not started yet missed the stop and waited for
ever (it hung a test run in a fixture's teardown). start_server returns a server whose loop runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.models.tokenizer import open_llamacpp_tokenizer

SMOL = "SmolLM2-135M-Instruct"

pytestmark = [pytest.mark.model, pytest.mark.timeout(300)]


async def test_engines_and_tokenizers_closed_at_once_after_opening_close(tmp_path: Path) -> None:
    for _ in range(4):
        async with LlamaCppEngine([SMOL], cache_dir=tmp_path, concurrency=1, tokenizer=True) as engine:
            assert [m.name for m in engine.models()] == [SMOL]
        async with open_llamacpp_tokenizer(SMOL, tmp_path) as tokenizer:
            assert tokenizer.eos in tokenizer.end_of_generation
