"""The embedded engine's slots under load, on the real SmolLM2: embeddings wait in a lane of their own (never
holding a generation's slot), a context that embeds never aborts, and a stream its reader closes stops
generating."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from veilnet.models.llamacpp import LlamaCppEngine

pytestmark = pytest.mark.model

SMOL = "SmolLM2-135M-Instruct"
LONG = {"model": SMOL, "messages": [{"role": "user", "content": "Count from 1 to 500."}], "max_tokens": 300,
        "temperature": 0, "ignore_eos": True}


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[LlamaCppEngine]:
    async with LlamaCppEngine([SMOL], cache_dir=tmp_path, concurrency=2, embedding_models=[SMOL]) as opened:
        yield opened


async def test_embeddings_waiting_their_turn_leave_the_generation_slots_free(tmp_path: Path) -> None:
    # one generation slot and one place in the queue: one embeddings request runs and one waits for its turn
    # (inputs go one at a time); a chat sent after them is admitted, where it used to be refused as "backend
    # is full" (the waiting embeddings request held the queue's place, the running one the slot)
    texts = [f"Paragraph {i}: " + "the lighthouse keeper counted ships along the northern coast. " * 25
             for i in range(4)]
    async with LlamaCppEngine([SMOL], cache_dir=tmp_path, concurrency=1, queue=1,
                              embedding_models=[SMOL]) as engine:
        embeddings = [asyncio.create_task(engine.embeddings({"model": SMOL, "input": texts})) for _ in range(2)]
        await asyncio.sleep(0.05)  # one running, one waiting
        async with asyncio.timeout(120):  # when llama.cpp takes it up beside the embeddings is its own affair
            answer = await engine.chat({"model": SMOL, "messages": [{"role": "user", "content": "Hi"}],
                                        "max_tokens": 2, "temperature": 0})
            vectors = await asyncio.gather(*embeddings)
    assert answer["choices"][0]["message"]["content"]
    assert [len(v["data"]) for v in vectors] == [4, 4]


def test_an_engine_embedding_beside_three_generation_slots_does_not_abort(tmp_path: Path) -> None:
    """llama.cpp aborts the process at the first embeddings request when its slots are not a power of two
    (3 here): the engine gives it 4, so a miner with max_concurrency 3 embeds. In a child process, since an
    abort would end this one."""
    script = f"""
import asyncio
from pathlib import Path
from veilnet.models.llamacpp import LlamaCppEngine

async def main():
    async with LlamaCppEngine([{SMOL!r}], cache_dir=Path({str(tmp_path)!r}), concurrency=3,
                              embedding_models=[{SMOL!r}]) as engine:
        answer = await engine.embeddings({{"model": {SMOL!r}, "input": ["hello", "a lighthouse"]}})
        print(len(answer["data"]), len(answer["data"][0]["embedding"]))

asyncio.run(main())
"""
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False)
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["2", "576"]


async def test_a_stream_closed_early_stops_generating_and_frees_its_slot(tmp_path: Path) -> None:
    async with LlamaCppEngine([SMOL], cache_dir=tmp_path, concurrency=1, queue=1) as engine:
        started = time.perf_counter()
        whole = await engine.chat(LONG)
        generating = time.perf_counter() - started
        assert whole["usage"]["completion_tokens"] == 300

        started = time.perf_counter()
        stream = engine.chat_stream({**LONG, "stream": True})
        chunks = 0
        async for _ in stream:
            chunks += 1
            if chunks == 3:
                break
        await stream.aclose()
        # the one slot is free for the next request at once, not after the 297 tokens nobody reads
        short = await engine.chat({**LONG, "max_tokens": 1})
        assert short["usage"]["completion_tokens"] == 1
        freed = time.perf_counter() - started
    assert freed < generating / 3, (freed, generating)  # measured: 0.2 s against 3 s
