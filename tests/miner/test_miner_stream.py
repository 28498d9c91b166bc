"""Streaming through the miner: the upstream relay (incl. an upstream that dies) and the real SmolLM2
(chat, completions and embeddings)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.miner.conftest import MINER, VALIDATOR, signed
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.protocol.epistula import verify_response, verify_stream

SMOL = "SmolLM2-135M-Instruct"


def _events(content: bytes) -> list[Any]:
    events = []
    for block in content.split(b"\n\n"):
        if block.startswith(b"data: "):
            payload = block[6:]
            events.append("[DONE]" if payload == b"[DONE]" else json.loads(payload))
    return events


async def test_upstream_stream_is_relayed_and_signed(make_miner: Any, upstream_engine: OpenAIUpstreamEngine) -> None:
    raw, headers = signed({"model": "upstream-echo", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    async with make_miner(upstream_engine) as client:
        response = await client.post("/v1/chat/completions", content=raw, headers=headers)
    assert response.status_code == 200
    content = verify_stream(response.content, request_uuid=headers["Epistula-Uuid"], caller=VALIDATOR.ss58_address,
                            signer=MINER.ss58_address)
    events = _events(content)
    assert events[-1] == "[DONE]"
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1] if e["choices"])
    assert text == "hello there"
    assert events[-2]["usage"]["total_tokens"] == 6


async def test_upstream_dying_mid_stream_ends_with_an_error_event(
    make_miner: Any, upstream_engine: OpenAIUpstreamEngine
) -> None:
    raw, headers = signed({"model": "upstream-dying", "messages": [{"role": "user", "content": "hi"}], "stream": True})
    async with make_miner(upstream_engine) as client:
        response = await client.post("/v1/chat/completions", content=raw, headers=headers)
        assert response.status_code == 200
        events = _events(response.content)
        assert events[0]["choices"][0]["delta"]["content"] == "hel"
        assert events[-2]["error"]["type"] == "upstream_error"
        assert events[-1] == "[DONE]"
        # the miner still serves
        raw, headers = signed({"model": "upstream-echo", "messages": [{"role": "user", "content": "hi"}]})
        assert (await client.post("/v1/chat/completions", content=raw, headers=headers)).status_code == 200


async def test_upstream_embeddings(make_miner: Any, upstream_engine: OpenAIUpstreamEngine) -> None:
    raw, headers = signed({"model": "upstream-echo", "input": "hello"})
    async with make_miner(upstream_engine) as client:
        response = await client.post("/v1/embeddings", content=raw, headers=headers)
        assert response.status_code == 200
        assert response.json()["data"][0]["embedding"] == [0.1, 0.2, 0.3]
        raw, headers = signed({"model": "upstream-dying", "input": "hello"})
        missing = await client.post("/v1/embeddings", content=raw, headers=headers)
        assert missing.status_code == 404
        raw, headers = signed({"model": "upstream-echo", "input": "garbage", "encoding_format": "base64"})
        broken = await client.post("/v1/embeddings", content=raw, headers=headers)
        assert broken.status_code == 502 and "unusable vectors" in broken.json()["error"]["message"]


async def test_upstream_answering_bytes_that_are_not_json_text_is_502(make_miner: Any) -> None:
    from fastapi import FastAPI
    from fastapi.responses import Response

    from tests.conftest import serve_asgi

    garbled = FastAPI()

    @garbled.post("/v1/chat/completions")
    async def chat() -> Response:  # not UTF-8, so not JSON text at all
        return Response(b'{"choices": "\xff\xfe"}', media_type="application/json")

    raw, headers = signed({"model": "upstream-echo", "messages": [{"role": "user", "content": "hi"}]})
    async with serve_asgi(garbled) as url, OpenAIUpstreamEngine(f"{url}/v1", ["upstream-echo"]) as engine, \
            make_miner(engine) as client:
        response = await client.post("/v1/chat/completions", content=raw, headers=headers)
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"


async def test_unreachable_upstream_is_502(make_miner: Any) -> None:
    async with OpenAIUpstreamEngine("http://127.0.0.1:9/v1", ["upstream-echo"]) as engine:
        raw, headers = signed({"model": "upstream-echo", "messages": [{"role": "user", "content": "hi"}]})
        async with make_miner(engine) as client:
            response = await client.post("/v1/chat/completions", content=raw, headers=headers)
    assert response.status_code == 502
    assert response.json()["error"]["type"] == "upstream_error"


@pytest.fixture(scope="module")
def smol_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppEngine]:
    """The real SmolLM2, loaded once for this module (requests are sequential, so no loop binds it)."""
    engine = LlamaCppEngine([SMOL], cache_dir=Path(tmp_path_factory.mktemp("models")), concurrency=2,
                            embedding_models=[SMOL])
    engine.load()
    yield engine


@pytest.mark.model
async def test_real_model_chat_logprobs_and_determinism(make_miner: Any, smol_engine: LlamaCppEngine) -> None:
    request = {"model": SMOL, "messages": [{"role": "user", "content": "Name a color."}], "max_tokens": 8,
               "temperature": 0, "seed": 42, "logprobs": True, "top_logprobs": 3}
    async with make_miner(smol_engine) as client:
        answers = []
        for _ in range(2):
            raw, headers = signed(request)
            response = await client.post("/v1/chat/completions", content=raw, headers=headers)
            assert response.status_code == 200, response.text
            answers.append(response.json())
    first = answers[0]
    assert first["model"] == SMOL
    assert first["choices"][0]["message"]["content"]
    assert first["usage"]["completion_tokens"] <= 8 and first["usage"]["prompt_tokens"] > 0
    tokens = first["choices"][0]["logprobs"]["content"]
    assert len(tokens) == first["usage"]["completion_tokens"]
    assert all(len(t["top_logprobs"]) == 3 and t["logprob"] <= 0 for t in tokens)
    # temperature 0 with a seed: identical answers
    assert answers[0]["choices"][0]["message"]["content"] == answers[1]["choices"][0]["message"]["content"]


@pytest.mark.model
async def test_real_model_streaming_and_stop(make_miner: Any, smol_engine: LlamaCppEngine) -> None:
    request = {"model": SMOL, "messages": [{"role": "user", "content": "Count from 1 to 20, separated by commas."}],
               "max_tokens": 40, "temperature": 0, "stream": True}
    async with make_miner(smol_engine) as client:
        raw, headers = signed(request)
        response = await client.post("/v1/chat/completions", content=raw, headers=headers)
        assert response.status_code == 200
        content = verify_stream(response.content, request_uuid=headers["Epistula-Uuid"],
                                caller=VALIDATOR.ss58_address, signer=MINER.ss58_address)
        events = _events(content)
        assert events[-1] == "[DONE]"
        text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e.get("choices"))
        assert "1" in text and "2" in text
        assert any(e.get("usage") for e in events[:-1])
        raw, headers = signed({**request, "stream": False, "stop": ["5"]})
        stopped = (await client.post("/v1/chat/completions", content=raw, headers=headers)).json()
        assert "5" not in stopped["choices"][0]["message"]["content"]
        assert stopped["choices"][0]["finish_reason"] == "stop"
        raw, headers = signed({"model": SMOL, "prompt": "The capital of France is", "max_tokens": 4,
                               "temperature": 0})
        completion = (await client.post("/v1/completions", content=raw, headers=headers)).json()
        assert "Paris" in completion["choices"][0]["text"]


@pytest.mark.model
async def test_real_model_embeddings_as_floats_or_base64(make_miner: Any, smol_engine: LlamaCppEngine) -> None:
    texts = ["a red apple", "a green pear"]
    async with make_miner(smol_engine) as client:
        capacity = (await client.get("/capacity")).json()
        # inputs are embedded one request at a time: validators probe its embeddings with one worker
        assert [(m["id"], m["embeddings"], m["embedding_concurrency"]) for m in capacity["models"]] == [(SMOL, True, 1)]
        raw, headers = signed({"model": SMOL, "input": texts})
        floats = await client.post("/v1/embeddings", content=raw, headers=headers)
        assert floats.status_code == 200, floats.text
        verify_response(dict(floats.headers), floats.content, request_uuid=headers["Epistula-Uuid"],
                        caller=VALIDATOR.ss58_address, expected_signer=MINER.ss58_address)
        data = floats.json()["data"]
        assert [len(item["embedding"]) for item in data] == [576, 576]
        raw, headers = signed({"model": SMOL, "input": texts, "encoding_format": "base64"})
        packed = (await client.post("/v1/embeddings", content=raw, headers=headers)).json()["data"]
        for as_float, as_base64 in zip(data, packed, strict=True):
            decoded = np.frombuffer(base64.b64decode(as_base64["embedding"]), dtype="<f4")
            assert np.allclose(decoded, as_float["embedding"], atol=1e-6)
        raw, headers = signed({"model": SMOL, "input": "word " * 3000})
        too_long = await client.post("/v1/embeddings", content=raw, headers=headers)
        assert too_long.status_code == 400
        assert too_long.json()["error"]["param"] == "input" and "2048 tokens" in too_long.json()["error"]["message"]


@pytest.mark.model
async def test_full_backend_answers_503_early(make_miner: Any, tmp_path: Path) -> None:
    import asyncio

    async with LlamaCppEngine([SMOL], cache_dir=tmp_path, concurrency=1, queue=0) as engine:
        async with make_miner(engine) as client:
            request = {"model": SMOL, "messages": [{"role": "user", "content": "Write a long story."}],
                       "max_tokens": 64, "temperature": 0}
            calls = []
            for _ in range(3):
                raw, headers = signed(request)
                calls.append(client.post("/v1/chat/completions", content=raw, headers=headers))
            results = await asyncio.gather(*calls)
    codes = sorted(r.status_code for r in results)
    assert codes[0] == 200 and 503 in codes
    refused = next(r for r in results if r.status_code == 503)
    assert refused.headers["Retry-After"] == "1"
