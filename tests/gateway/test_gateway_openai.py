"""The gateway end to end with the official openai SDK, real miners and a real loopback upstream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import redis.asyncio as aioredis
from tests.gateway.conftest import MINER_A, MINER_B, stack


async def test_chat_stream_and_usage_cost(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client) as s:
        client: openai.AsyncOpenAI = s["client"]
        raw = await client.chat.completions.with_raw_response.create(
            model="upstream-echo", messages=[{"role": "user", "content": "hi"}])
        completion = raw.parse()
        assert completion.choices[0].message.content == "hello there"
        assert raw.headers["X-Generation-Id"].startswith("gen-")
        assert completion.usage is not None
        assert completion.usage.model_extra["cost"] == pytest.approx((3 * 1.0 + 2 * 2.0) / 1e6)
        stream = await client.chat.completions.create(
            model="upstream-echo", messages=[{"role": "user", "content": "hi"}], stream=True,
            stream_options={"include_usage": True})
        text, usage = "", None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage:
                usage = chunk.usage
        assert text == "hello there"
        assert usage is not None and usage.model_extra["cost"] > 0
        # as on OpenRouter, the last chunk carries usage with cost even when the request did not ask for it
        stream = await client.chat.completions.create(
            model="upstream-echo", messages=[{"role": "user", "content": "hi"}], stream=True)
        chunks = [chunk async for chunk in stream]
        assert chunks[-1].usage is not None and chunks[-1].usage.model_extra["cost"] == pytest.approx(
            (3 * 1.0 + 3 * 2.0) / 1e6)
        rows = await s["keys"].usage_rows(s["key"].id)
        assert [r.status for r in rows] == ["ok", "ok", "ok"] and all(r.miner for r in rows)
        models = await client.models.list()
        assert {m.id for m in models.data} == {"upstream-echo", "upstream-dying", "upstream-slow"}
        echo = next(m for m in models.data if m.id == "upstream-echo").model_extra or {}
        assert echo["pricing"] == {"prompt": pytest.approx(1e-6), "completion": pytest.approx(2e-6)}  # USD per token
        assert echo["context_length"] > 0 and echo["providers"] == 2


async def test_errors_have_openai_shapes(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client) as s:
        client: openai.AsyncOpenAI = s["client"]
        with pytest.raises(openai.NotFoundError) as not_found:
            await client.chat.completions.create(model="gpt-99", messages=[{"role": "user", "content": "hi"}])
        assert "gpt-99" in str(not_found.value)
        with pytest.raises(openai.BadRequestError) as bad:
            await client.chat.completions.create(model="upstream-echo", temperature=9,
                                                 messages=[{"role": "user", "content": "hi"}])
        assert bad.value.body["param"] == "temperature"  # type: ignore[index]
        wrong = openai.AsyncOpenAI(base_url=f"{s['url']}/v1", api_key="vn-nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await wrong.chat.completions.create(model="upstream-echo", messages=[{"role": "user", "content": "hi"}])
        await wrong.close()
        poor_secret, _ = await s["keys"].create("poor", credit_usd=0.0)
        poor_client = openai.AsyncOpenAI(base_url=f"{s['url']}/v1", api_key=poor_secret, max_retries=0)
        with pytest.raises(openai.APIStatusError) as no_credit:
            await poor_client.chat.completions.create(model="upstream-echo",
                                                      messages=[{"role": "user", "content": "hi"}])
        assert no_credit.value.status_code == 402
        await poor_client.close()


async def test_malformed_and_oversized_bodies(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    """413 for a body over the limit, whether it declares its length or streams it chunked (it is refused
    while it arrives), 400 naming what is wrong for bodies that are not a JSON object; nothing is billed."""
    async with stack(tmp_path, redis_client) as s, aiohttp.ClientSession() as http:
        url = f"{s['url']}/v1/chat/completions"
        headers = {"Authorization": f"Bearer {s['secret']}", "Content-Type": "application/json"}
        oversized = b'{"model":"upstream-echo","messages":[{"role":"user","content":"' + b"x" * (5 << 20) + b'"}]}'

        async def chunked() -> AsyncIterator[bytes]:
            for start in range(0, len(oversized), 1 << 16):
                yield oversized[start:start + (1 << 16)]

        for body in (oversized, chunked()):
            async with http.post(url, data=body, headers=headers) as response:
                assert response.status == 413
                error = (await response.json())["error"]
                assert error["code"] == "payload_too_large" and "4194304" in error["message"]
        for body, message in ((b'{"model": "upstream-echo", ', "body is not valid JSON"),
                              (b'["upstream-echo"]', "body must be a JSON object")):
            async with http.post(url, data=body, headers=headers) as response:
                assert response.status == 400
                assert (await response.json())["error"]["message"].startswith(message)
        assert await s["keys"].usage_rows(s["key"].id) == []


async def test_fallback_before_first_token_and_error_after(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client, capacity_a=0) as s:  # miner A answers 429 to everything
        client: openai.AsyncOpenAI = s["client"]
        for _ in range(3):
            completion = await client.chat.completions.create(
                model="upstream-echo", messages=[{"role": "user", "content": "hi"}])
            assert completion.choices[0].message.content == "hello there"
        rows = await s["keys"].usage_rows(s["key"].id)
        assert {r.miner for r in rows} == {MINER_B.ss58_address}
        stream = await client.chat.completions.create(
            model="upstream-dying", messages=[{"role": "user", "content": "hi"}], stream=True)
        with pytest.raises(openai.APIError):
            async for _chunk in stream:
                pass
        rows = await s["keys"].usage_rows(s["key"].id)
        assert rows[-1].status == "error" and rows[-1].model == "upstream-dying"
        # a miner whose stream carries a usage line that is not JSON: an in-band error, not a broken stream
        stream = await client.chat.completions.create(
            model="upstream-echo", user="garbled-usage", messages=[{"role": "user", "content": "hi"}], stream=True)
        with pytest.raises(openai.APIError, match="unreadable chunk"):
            async for _chunk in stream:
                pass
        rows = await s["keys"].usage_rows(s["key"].id)
        assert rows[-1].status == "error" and rows[-1].model == "upstream-echo"


async def test_metrics_and_dashboard_snapshot(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client) as s:
        client: openai.AsyncOpenAI = s["client"]
        await client.chat.completions.create(model="upstream-echo", messages=[{"role": "user", "content": "hi"}])
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{s['url']}/metrics") as response:
                metrics = await response.text()
            async with http.get(f"{s['url']}/dashboard/api/snapshot") as response:
                snapshot = await response.json()
            async with http.get(f"{s['url']}/dashboard") as response:
                assert response.status == 200 and "dashboard" in (await response.text()).lower()
        assert 'veilnet_gateway_requests_total{miner_uid="' in metrics and 'status="ok"' in metrics
        assert {row["uid"] for row in snapshot["metagraph"]} == {0, 1, 2}
        assert sum(r["rps"] > 0 for r in snapshot["requests"]) == 1


async def test_per_key_rate_limit_and_organic_samples(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client, rpm=2) as s:
        client: openai.AsyncOpenAI = s["client"]
        for _ in range(2):
            await client.chat.completions.create(model="upstream-echo", user="alice",
                                                 messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(model="upstream-echo", messages=[{"role": "user", "content": "hi"}])
        assert 1 <= int(limited.value.response.headers["Retry-After"]) <= 60
        counts = s["ctx"].organic_counts  # what the challenger leaves room for in this validator's quotas
        assert sum([await counts.used(m.ss58_address, 0) for m in (MINER_A, MINER_B)]) == 2
        samples = await s["organic"].read()
        assert len(samples) == 2
        assert all(sample["model"] == "upstream-echo" and sample["miner"] for sample in samples)
        assert "alice" not in samples[0]["request"]  # anonymised
        assert samples[0]["response"] and "hello there" in samples[0]["response"]


async def test_key_endpoint_reports_credit_and_rate_limits(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client, rpm=5, tpm=10_000) as s, aiohttp.ClientSession() as http:
        client: openai.AsyncOpenAI = s["client"]
        answers = [await client.chat.completions.create(model="upstream-echo",
                                                        messages=[{"role": "user", "content": "hi"}])
                   for _ in range(2)]
        spent = sum(answer.usage.model_extra["cost"] for answer in answers if answer.usage and answer.usage.model_extra)
        url = f"{s['url']}/api/v1/key"
        async with http.get(url, headers={"Authorization": f"Bearer {s['secret']}"}) as response:
            assert response.status == 200
            data = (await response.json())["data"]
        assert data["label"] == "tests" and data["limit"] == 10.0 and data["is_free_tier"] is False
        assert data["budget"] is None
        assert spent > 0 and data["usage"] == pytest.approx(spent)  # rows not yet in the ledger count already
        assert data["limit_remaining"] == pytest.approx(10.0 - spent)
        assert data["rate_limit"] == {"requests": 5, "tokens": 10_000, "interval": "1m"}
        tokens = sum(answer.usage.total_tokens for answer in answers if answer.usage)
        assert data["rate_limit_used"] == {"requests": 2, "tokens": tokens}  # asking does not count
        poor_secret, _ = await s["keys"].create("poor", credit_usd=0.0)
        async with http.get(url, headers={"Authorization": f"Bearer {poor_secret}"}) as response:
            assert response.status == 200  # a key out of credit can still see that it is
            assert (await response.json())["data"]["limit_remaining"] == 0.0
        for headers in ({}, {"Authorization": "Bearer vn-nope"}, {"Authorization": s["secret"]}):
            async with http.get(url, headers=headers) as response:
                assert response.status == 401
                assert (await response.json())["error"]["code"] == "invalid_api_key"


async def test_embeddings_through_the_gateway(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client) as s:
        client: openai.AsyncOpenAI = s["client"]
        result = await client.embeddings.create(model="upstream-echo", input="hello")
        assert result.data[0].embedding == pytest.approx([0.1, 0.2, 0.3], rel=1e-6)  # float32 over base64
        assert result.usage.model_extra["cost"] > 0  # type: ignore[union-attr]
        with pytest.raises(openai.NotFoundError):
            await client.embeddings.create(model="upstream-dying", input="hello")  # no miner embeds with it
        with pytest.raises(openai.APIStatusError) as broken:  # miners answering non-vectors: no 500
            await client.embeddings.create(model="upstream-echo", input="garbage")
        assert broken.value.status_code == 503 and "unreadable answer" in broken.value.message


async def test_bad_provider_preferences_are_400s_naming_the_field(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client) as s:
        client: openai.AsyncOpenAI = s["client"]
        for provider, field in [({"max_price": {"prompt": "cheap"}}, "provider.max_price.prompt"),
                                ({"sort": "fastest"}, "provider.sort"), ({"tier": "gold"}, "provider.tier")]:
            with pytest.raises(openai.BadRequestError) as bad:
                await client.chat.completions.create(model="upstream-echo", extra_body={"provider": provider},
                                                     messages=[{"role": "user", "content": "hi"}])
            assert bad.value.body["param"] == field  # type: ignore[index]
        pinned = await client.chat.completions.create(
            model="upstream-echo", messages=[{"role": "user", "content": "hi"}],
            extra_body={"provider": {"order": [MINER_B.ss58_address], "allow_fallbacks": False}})
        assert pinned.choices[0].message.content == "hello there"
        rows = await s["keys"].usage_rows(s["key"].id)
        assert rows[-1].miner == MINER_B.ss58_address
        for provider in ({"only": ["5NoSuchMiner"]}, {"max_price": {"completion": 0.5}}):  # both price 2.0
            with pytest.raises(openai.NotFoundError) as none_match:
                await client.chat.completions.create(model="upstream-echo", extra_body={"provider": provider},
                                                     messages=[{"role": "user", "content": "hi"}])
            assert none_match.value.body["code"] == "no_endpoints"  # type: ignore[index]


async def test_require_parameters_and_data_collection(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client) as s:
        client: openai.AsyncOpenAI = s["client"]
        hi = [{"role": "user", "content": "hi"}]
        for _ in range(4):  # miner B declares logit_bias; miner A does not
            await client.chat.completions.create(model="upstream-echo", messages=hi, logit_bias={"1": 1.0},
                                                 extra_body={"provider": {"require_parameters": True}})
        for _ in range(4):  # only miner B declares that it keeps no data
            await client.chat.completions.create(model="upstream-echo", messages=hi,
                                                 extra_body={"provider": {"data_collection": "deny"}})
        rows = await s["keys"].usage_rows(s["key"].id)
        assert {r.miner for r in rows} == {MINER_B.ss58_address}
        sampled = await s["organic"].read()
        assert len(sampled) == 4  # the require_parameters ones; data_collection=deny is never sampled
        assert all("logit_bias" in sample["request"] for sample in sampled)
        with pytest.raises(openai.NotFoundError) as none_left:
            await client.chat.completions.create(
                model="upstream-echo", messages=hi, logit_bias={"1": 1.0},
                extra_body={"provider": {"require_parameters": True, "only": [MINER_A.ss58_address]}})
        assert "logit_bias" in str(none_left.value) and "require_parameters" in str(none_left.value)
        await client.chat.completions.create(model="upstream-echo", messages=hi)
        assert len(await s["organic"].read()) == 5  # an ordinary request is sampled as before


async def test_keepalive_comments_while_the_miner_is_slow(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client, keepalive_seconds=0.1) as s:
        body = {"model": "upstream-slow", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"Authorization": f"Bearer {s['secret']}"}
        async with aiohttp.ClientSession() as http, http.post(f"{s['url']}/v1/chat/completions", json=body,
                                                               headers=headers) as response:
            assert response.status == 200 and response.headers["X-Generation-Id"].startswith("gen-")
            lines = [line async for line in response.content]
        events = [line for line in lines if line.strip()]
        data_at = next(i for i, line in enumerate(events) if line.startswith(b"data: "))
        assert data_at >= 2 and all(line == b": keep-alive\n" for line in events[:data_at])
        assert events[-1] == b"data: [DONE]\n"
        # the openai SDK ignores the comments
        stream = await s["client"].chat.completions.create(model="upstream-slow", stream=True,
                                                           messages=[{"role": "user", "content": "hi"}])
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
        assert text == "hello there"
        rows = await s["keys"].usage_rows(s["key"].id)
        assert [r.status for r in rows] == ["ok", "ok"]


async def test_no_usage_row_is_lost_when_the_client_disconnects(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async def rows_after(s: dict[str, Any], count: int) -> list[Any]:
        for _ in range(100):  # the gateway notices the disconnect on its own time
            rows = await s["keys"].usage_rows(s["key"].id)
            if len(rows) >= count:
                return rows
            await asyncio.sleep(0.02)
        raise AssertionError(f"{count} usage rows expected, found {len(rows)}")

    async with stack(tmp_path, redis_client, keepalive_seconds=0.05) as s, aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {s['secret']}"}
        url = f"{s['url']}/v1/chat/completions"
        # 1) gone while the gateway keeps the stream alive, waiting for a slow miner
        request = {"model": "upstream-slow", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with http.post(url, json=request, headers=headers) as response:
            assert response.status == 200
            assert (await response.content.readline()).startswith(b":")  # a keep-alive comment
            response.close()
        rows = await rows_after(s, 1)
        assert (rows[0].status, rows[0].model, rows[0].miner) == ("client_disconnected", "upstream-slow", None)
        # 2) gone mid-stream, after the first token
        request = {"model": "upstream-echo", "messages": [{"role": "user", "content": "hi"}], "stream": True,
                   "user": "slow-stream"}
        async with http.post(url, json=request, headers=headers) as response:
            while not (line := await response.content.readline()).startswith(b"data: {"):
                assert line, "the stream ended before its first chunk"
            assert b'"hel"' in line
            response.close()
        rows = await rows_after(s, 2)
        assert rows[1].status == "client_disconnected" and rows[1].model == "upstream-echo"
        assert rows[1].miner in (MINER_A.ss58_address, MINER_B.ss58_address)
        assert rows[1].latency_ms < 500  # recorded when the client left, not when the miner finished
        # leaving before the miner's usage line is not free: billed from what was relayed, and said so
        assert rows[1].completion_tokens == 1 and rows[1].prompt_tokens == 0  # "hi": 2 characters
        assert rows[1].cost_usd == pytest.approx((rows[1].prompt_tokens * 1.0 + 1 * 2.0) / 1e6)
        assert rows[1].error == "usage estimated: the client left before the miner's usage arrived"
        assert rows[0].cost_usd == 0 and rows[0].completion_tokens == 0  # nothing was relayed to that one


async def test_a_request_no_miner_answers_in_time_is_a_408(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client, request_timeout=0.2) as s:  # upstream-slow answers after 0.5 s
        client: openai.AsyncOpenAI = s["client"]
        for stream in (False, True):
            with pytest.raises(openai.APIStatusError) as timed_out:
                await client.chat.completions.create(model="upstream-slow", stream=stream,
                                                     messages=[{"role": "user", "content": "hi"}])
            assert timed_out.value.status_code == 408
            assert timed_out.value.body["code"] == "request_timeout"  # type: ignore[index]
            assert "did not answer within 0.2 s" in timed_out.value.body["message"]  # type: ignore[index]
        rows = await s["keys"].usage_rows(s["key"].id)
        assert [(r.status, r.cost_usd) for r in rows] == [("error", 0.0)] * 2
        # a miner that answers in time is still served by the same gateway
        completion = await client.chat.completions.create(model="upstream-echo",
                                                          messages=[{"role": "user", "content": "hi"}])
        assert completion.choices[0].message.content == "hello there"


async def test_a_key_over_its_budget_is_a_402_until_the_period_resets(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    async with stack(tmp_path, redis_client) as s, aiohttp.ClientSession() as http:
        # a request of "hi" with max_tokens=2 holds $86e-6 (its 2 bytes and 80 template tokens, 2 completion
        # tokens) and costs $7e-6: the day's budget covers the first, and what is left of it cannot cover a second
        cap = 90e-6
        secret, _ = await s["keys"].create("capped", credit_usd=10.0, budget_usd=cap, budget_reset="daily")
        capped = openai.AsyncOpenAI(base_url=f"{s['url']}/v1", api_key=secret, max_retries=0)
        hello: Any = [{"role": "user", "content": "hi"}]
        answer = await capped.chat.completions.create(model="upstream-echo", messages=hello, max_tokens=2)
        cost = answer.usage.model_extra["cost"]  # type: ignore[union-attr]
        assert cost == pytest.approx(7e-6)
        with pytest.raises(openai.APIStatusError) as refused:
            await capped.chat.completions.create(model="upstream-echo", messages=hello, max_tokens=2)
        await capped.close()
        assert refused.value.status_code == 402
        assert refused.value.body["code"] == "budget_exceeded"  # type: ignore[index]
        message = refused.value.body["message"]  # type: ignore[index]
        assert "$0.000083 of its daily budget left and this request may cost up to $0.000086" in message
        assert "it resets at" in message
        async with http.get(f"{s['url']}/api/v1/key", headers={"Authorization": f"Bearer {secret}"}) as response:
            assert response.status == 200  # a key over its budget can still see that it is
            data = (await response.json())["data"]
        assert data["limit_remaining"] == pytest.approx(10.0 - cost)
        budget = data["budget"]
        assert budget["limit"] == cap and budget["reset"] == "daily" and budget["usage"] == pytest.approx(cost)
        assert budget["remaining"] == pytest.approx(cap - cost) and budget["resets_at"].endswith("T00:00:00+00:00")


async def test_models_fallback_list_and_provider_ignore(tmp_path: Path, redis_client: aioredis.Redis) -> None:
    async with stack(tmp_path, redis_client) as s:
        client: openai.AsyncOpenAI = s["client"]
        hello: Any = [{"role": "user", "content": "hi"}]
        # OpenRouter's `models`: tried in order after `model` when it cannot be served
        completion = await client.chat.completions.create(model="no-such-model", messages=hello,
                                                          extra_body={"models": ["upstream-echo"]})
        assert completion.model == "upstream-echo" and completion.choices[0].message.content == "hello there"
        for _ in range(4):  # miner A has the higher score, but the request ignores it
            await client.chat.completions.create(model="upstream-echo", messages=hello,
                                                 extra_body={"provider": {"ignore": [MINER_A.ss58_address]}})
        rows = await s["keys"].usage_rows(s["key"].id)
        assert [r.model for r in rows] == ["upstream-echo"] * 5
        assert {r.miner for r in rows[1:]} == {MINER_B.ss58_address}
        with pytest.raises(openai.NotFoundError):  # without a fallback the unknown model is a 404
            await client.chat.completions.create(model="no-such-model", messages=hello)


async def test_one_id_for_the_answer_its_chunks_its_header_and_its_ledger_row(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    async with stack(tmp_path, redis_client) as s:
        client: openai.AsyncOpenAI = s["client"]
        raw = await client.chat.completions.with_raw_response.create(model="upstream-echo",
                                                                     messages=[{"role": "user", "content": "hi"}])
        whole = raw.headers["X-Generation-Id"]
        assert raw.parse().id == whole
        streamed = await client.chat.completions.with_raw_response.create(
            model="upstream-echo", messages=[{"role": "user", "content": "hi"}], stream=True)
        chunks = [chunk async for chunk in streamed.parse()]
        stream_id = streamed.headers["X-Generation-Id"]
        assert len(chunks) == 4 and {chunk.id for chunk in chunks} == {stream_id}  # usage chunk included
        assert stream_id != whole and stream_id.startswith("gen-")
        rows = await s["keys"].usage_rows(s["key"].id)
        assert [r.generation_id for r in rows] == [whole, stream_id]


async def test_a_model_by_id_and_unknown_routes_in_openais_error_shape(
    tmp_path: Path, redis_client: aioredis.Redis
) -> None:
    async with stack(tmp_path, redis_client) as s, aiohttp.ClientSession() as http:
        client: openai.AsyncOpenAI = s["client"]
        model = await client.models.retrieve("upstream-echo")
        assert model.id == "upstream-echo" and model.object == "model"
        extra = model.model_extra or {}
        assert extra["context_length"] > 0 and extra["providers"] == 2 and extra["input_modalities"] == ["text"]
        assert extra["pricing"] == {"prompt": pytest.approx(1e-6), "completion": pytest.approx(2e-6)}
        with pytest.raises(openai.NotFoundError) as missing:
            await client.models.retrieve("no-such-model")
        assert missing.value.body["code"] == "model_not_found"  # type: ignore[index]
        for method, path, status, code in (("GET", "/v1/nothing", 404, "route_not_found"),
                                           ("POST", "/v2/chat/completions", 404, "route_not_found"),
                                           ("DELETE", "/v1/models", 405, "method_not_allowed")):
            async with http.request(method, f"{s['url']}{path}") as response:
                assert response.status == status
                error = (await response.json())["error"]
                assert error["code"] == code and error["message"] and error["type"]
