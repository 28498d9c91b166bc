"""The hostile-input corpus (:mod:`tests.hostile.corpus`) against a real gateway in front of real miners
serving the embedded SmolLM2, over loopback HTTP: each request gets the 4xx it is owed, naming what is wrong;
afterwards no miner was blamed, no breaker is open and a normal request is served."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from tests.gateway.conftest import stack
from tests.hostile.corpus import CASES, MODEL, Case, chat_body

from veilnet.gateway.faults import Fault
from veilnet.models.llamacpp import LlamaCppEngine


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppEngine]:
    engine = LlamaCppEngine([MODEL], cache_dir=Path(tmp_path_factory.mktemp("models")), concurrency=2, threads=1,
                            embedding_models=[MODEL])
    engine.load()
    yield engine


def verdict(case: Case, status: int, text: str) -> str | None:
    """What is wrong with the gateway's answer to ``case`` (None: it is the answer owed)."""
    try:
        error = json.loads(text)["error"]
        said = " ".join(str(error.get(k) or "") for k in ("message", "param", "code"))
    except (ValueError, KeyError, TypeError):
        return f"{status}, not OpenAI's error document: {text[:200]!r}"
    if status != case.status or case.names.lower() not in said.lower():
        return f"{status} {said[:300]!r} (owed {case.status} naming {case.names!r})"
    return None


@pytest.mark.model
async def test_hostile_requests_get_a_named_4xx_and_break_nothing(tmp_path: Path, redis_client: aioredis.Redis,
                                                                  smol: LlamaCppEngine) -> None:
    async with stack(tmp_path, redis_client, engine=smol) as s, aiohttp.ClientSession() as http:
        url, key = s["url"], {"Authorization": f"Bearer {s['secret']}"}
        wrong = []
        for case in CASES:
            headers = {"Content-Type": case.content_type, **(key if case.headers is None else case.headers)}
            started = time.perf_counter()
            async with http.post(f"{url}{case.path}", data=case.body, headers=headers) as response:
                problem = verdict(case, response.status, await response.text())
            took = time.perf_counter() - started
            print(f"{case.name}: {response.status} in {took * 1000:.0f} ms")
            if problem is not None:
                wrong.append(f"{case.name}: {problem}")
        assert wrong == [], "\n".join(wrong)
        blamed = [o for o in s["outcomes"] if o.fault is Fault.MINER]
        assert blamed == []
        assert s["ctx"].breaker.states() == {}
        async with http.post(f"{url}/v1/chat/completions", json=chat_body(), headers=key) as response:
            assert response.status == 200, await response.text()
            answer = await response.json()
        assert answer["choices"][0]["message"]["content"]
        assert answer["usage"]["completion_tokens"] <= 4
