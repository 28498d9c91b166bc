"""Probe rounds over real HTTP: real miner apps (Epistula, quotas in real Redis) in front of loopback
backends that serve a fixed amount of work per second shared by every request in flight, as a saturated
inference server does. Two hotkeys in front of one backend measure half its throughput each, for chat and for
a task served by its own engine (OCR); a miner advertising more concurrency than its backend admits is
measured refusing; a miner whose terms cannot be read gets one reliability failure; what the round records
reaches the scorers' stream."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from bittensor_wallet import Keypair
from fastapi import FastAPI, Request
from tests.conftest import free_port, serve_asgi
from tests.miner.conftest import neuron, served_neuron

from veilnet.chain.types import Metagraph, NeuronInfo
from veilnet.miner import MetagraphHolder, MinerContext, create_miner_app
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.relay import MinerClient, RelayClient
from veilnet.scoring import Observation, ScoreParams, tempo_components, update_scores, weights_from_scores
from veilnet.settings import EpistulaSettings, MinerSettings, ValidatorSettings
from veilnet.store.scores import ScoreStore
from veilnet.store.validator_pipeline import ValidatorPipeline
from veilnet.tasks.interface import ServedTask
from veilnet.tasks.ocr import OCR_MODEL, OcrAnswer, OcrRequest, ocr_answer
from veilnet.tasks.registry import task_named
from veilnet.validator.asking import terms_failure
from veilnet.validator.probe import probe_once
from veilnet.validator.service import ValidatorContext

VALIDATOR = Keypair.create_from_uri("//ProbingValidator")
KEYS = {name: Keypair.create_from_uri(f"//Probe{name}") for name in ("solo", "sybil1", "sybil2", "liar", "mute")}
RATE = 400.0  # tokens per second each backend generates, however many requests share it
LENGTH = 128  # the default probe length
IMAGES_PER_SECOND = 5.0  # what each OCR backend reads, however many requests share it


def paced_backend(rate: float) -> FastAPI:
    """An OpenAI-compatible chat backend generating ``rate`` tokens/s in all: 8 tokens at a time, requests
    taking turns (asyncio.Lock is first come, first served), so concurrent requests share the rate."""
    app = FastAPI()
    turn = asyncio.Lock()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> dict[str, Any]:
        body = await request.json()
        tokens = int(body.get("max_tokens") or 16)
        for _ in range(0, tokens, 8):
            async with turn:
                await asyncio.sleep(8 / rate)
        return {"id": "chatcmpl-paced", "object": "chat.completion", "created": 1, "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "length",
                             "message": {"role": "assistant", "content": " ".join(["word"] * tokens)}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": tokens, "total_tokens": tokens + 9}}

    return app


@dataclass
class StaticChain:
    """The one chain call a probe round makes, answered from a fixed metagraph."""

    metagraph: Metagraph

    async def get_metagraph(self, netuid: int) -> Metagraph:
        return self.metagraph


@contextlib.asynccontextmanager
async def market(redis: aioredis.Redis, unused_url: str) -> AsyncIterator[Metagraph]:
    """solo on backend A; sybil1 and sybil2 on backend B; liar advertises 4 concurrent requests and its
    backend admits 1; mute's axon does not answer."""
    validators = (neuron(0, VALIDATOR, 1000, True),)
    async with contextlib.AsyncExitStack() as stack:
        backend_a = await stack.enter_async_context(serve_asgi(paced_backend(RATE)))
        backend_b = await stack.enter_async_context(serve_asgi(paced_backend(RATE)))
        backend_c = await stack.enter_async_context(serve_asgi(paced_backend(RATE)))
        engines = {
            "a": await stack.enter_async_context(OpenAIUpstreamEngine(f"{backend_a}/v1", ["m"])),
            "b": await stack.enter_async_context(OpenAIUpstreamEngine(f"{backend_b}/v1", ["m"])),
            "c": await stack.enter_async_context(OpenAIUpstreamEngine(f"{backend_c}/v1", ["m"], concurrency=1,
                                                                      queue=0)),
        }
        served: list[NeuronInfo] = []
        for uid, (name, backend) in enumerate((("solo", "a"), ("sybil1", "b"), ("sybil2", "b"), ("liar", "c")), 1):
            ctx = MinerContext(keypair=KEYS[name], engine=engines[backend], redis=redis,
                               metagraph=MetagraphHolder(Metagraph(1, 0, validators)),
                               settings=MinerSettings(max_concurrency=4, price_input_per_million=0.1,
                                                      price_output_per_million=0.3),
                               epistula=EpistulaSettings())
            url = await stack.enter_async_context(serve_asgi(create_miner_app(ctx), lifespan="off"))
            served.append(served_neuron(uid, KEYS[name], url))
        served.append(served_neuron(5, KEYS["mute"], unused_url))
        yield Metagraph(1, 0, (*validators, *served))


async def probe_and_collect(redis: aioredis.Redis, graph: Metagraph, http: aiohttp.ClientSession,
                            settings: ValidatorSettings) -> list[Observation]:
    """One probe round; returns the observations it left (terms) and the probe answers' observations, as
    the scorers read them from the answers stream (unverified: no reference model here)."""
    pipeline = ValidatorPipeline(redis, VALIDATOR.ss58_address, 1, consumer="probe-test")
    ctx = ValidatorContext(keypair=VALIDATOR, chain=StaticChain(graph), netuid=1, reference=None,  # type: ignore[arg-type]
                           http=http, scores=ScoreStore(redis, VALIDATOR.ss58_address, 1), settings=settings,
                           pipeline=pipeline, rng=random.Random(5))
    async with RelayClient() as relay:
        records = await probe_once(ctx, MinerClient(VALIDATOR, relay))
    observations, _ = await pipeline.take_observations()
    claimed = await pipeline.claim_answers(count=100, block_ms=100)
    assert [r.observation for _, r in claimed] == [r.observation for r in records]
    return observations + [r.observation for _, r in claimed]


async def test_a_probe_round_measures_throughput_sybils_split_and_liars_refuse(redis_client: aioredis.Redis) -> None:
    settings = ValidatorSettings(reference_models=["m"], probe_max_tokens=LENGTH, probe_concurrency=8)
    async with market(redis_client, f"http://127.0.0.1:{free_port()}") as graph, aiohttp.ClientSession() as http:
        observations = await probe_and_collect(redis_client, graph, http, settings)
    by = {name: [o for o in observations if o.miner == key.ss58_address] for name, key in KEYS.items()}
    probes = {name: [o for o in rows if o.kind == "probe"] for name, rows in by.items()}
    # four requests each (the advertised concurrency, under the cap of 8), one round, all at the same moment
    assert {name: len(rows) for name, rows in probes.items()} == {"solo": 4, "sybil1": 4, "sybil2": 4, "liar": 4,
                                                                  "mute": 0}
    assert len({o.probe for rows in probes.values() for o in rows}) == 1
    assert all(o.outcome == "ok" and o.units == LENGTH for name in ("solo", "sybil1", "sybil2") for o in probes[name])
    assert sorted(o.outcome for o in probes["liar"]).count("ok") == 1  # its backend admits one at a time
    # terms: the price it charges (blended 0.2); nothing for the miner whose /capacity is silent
    terms = {name: [o for o in rows if o.kind == "terms"] for name, rows in by.items()}
    assert [(o.outcome, o.price_per_million) for o in terms["solo"]] == [("ok", pytest.approx(0.2))]
    assert terms.get("mute", []) == []  # unreadable terms: the challenger records that failure, once a minute
    observations.append(terms_failure(KEYS["mute"].ss58_address))  # what the challenger records for it

    parts = tempo_components(observations, ScoreParams())
    throughput = {name: parts[key.ss58_address].tasks["chat"].throughput or 0.0
                  for name, key in KEYS.items() if name != "mute"}
    assert 0.3 * RATE < throughput["solo"] <= 1.05 * RATE  # what backend A generates (HTTP and a busy loop cost some)
    split = throughput["sybil1"] + throughput["sybil2"]
    assert split == pytest.approx(throughput["solo"], rel=0.1)  # one backend's throughput, split in two
    assert throughput["sybil1"] == pytest.approx(throughput["sybil2"], rel=0.15)
    assert parts[KEYS["liar"].ss58_address].reliability == pytest.approx(1 / 4)
    assert parts[KEYS["mute"].ss58_address].reliability == 0.0

    weights = weights_from_scores(update_scores({}, observations, tempo=1), tempo=1)
    pay = {name: weights[key.ss58_address] for name, key in KEYS.items()}
    assert pay["sybil1"] + pay["sybil2"] == pytest.approx(pay["solo"], rel=0.15)
    assert pay["liar"] < 0.1 * pay["solo"] and pay["mute"] == 0.0


class PacedReader:
    """An OCR backend reading ``rate`` images per second in all, the images in flight sharing it (each read
    in ten slices, requests taking turns slice by slice, as a batching engine shares itself)."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._turn = asyncio.Lock()

    async def __aenter__(self) -> PacedReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def models(self) -> list[str]:
        return [OCR_MODEL]

    async def serve(self, request: OcrRequest) -> OcrAnswer:
        for _ in range(10):
            async with self._turn:
                await asyncio.sleep(0.1 / self._rate)
        return ocr_answer("chatcmpl-paced", 1, request.model, "some text")


async def test_a_probe_round_bursts_every_offered_task_so_sybils_split_its_backend_too(
        redis_client: aioredis.Redis) -> None:
    """OCR (a task served by its own engine, credited per image) in the same round: solo reads on backend A,
    sybil1 and sybil2 on backend B; each is sent its advertised concurrency of the task's own challenges at
    the same moment, so the two hotkeys measure half of B each and together what solo measures."""
    validators = (neuron(0, VALIDATOR, 1000, True),)
    readers = {"a": PacedReader(IMAGES_PER_SECOND), "b": PacedReader(IMAGES_PER_SECOND)}
    async with contextlib.AsyncExitStack() as stack:
        chat = await stack.enter_async_context(serve_asgi(paced_backend(RATE)))
        engine = await stack.enter_async_context(OpenAIUpstreamEngine(f"{chat}/v1", ["m"]))
        served: list[NeuronInfo] = []
        for uid, (name, reader) in enumerate((("solo", "a"), ("sybil1", "b"), ("sybil2", "b")), 1):
            ctx = MinerContext(keypair=KEYS[name], engine=engine, redis=redis_client,
                               metagraph=MetagraphHolder(Metagraph(1, 0, validators)),
                               settings=MinerSettings(max_concurrency=4), epistula=EpistulaSettings(),
                               tasks={"ocr": ServedTask(task_named("ocr"), readers[reader])})
            url = await stack.enter_async_context(serve_asgi(create_miner_app(ctx), lifespan="off"))
            served.append(served_neuron(uid, KEYS[name], url))
        graph = Metagraph(1, 0, (*validators, *served))
        # no chat reference model in common: the round is OCR's alone
        settings = ValidatorSettings(reference_models=["not-served"], probe_concurrency=8, tasks=["chat", "ocr"])
        http = await stack.enter_async_context(aiohttp.ClientSession())
        observations = await probe_and_collect(redis_client, graph, http, settings)
    probes = {name: [o for o in observations if o.miner == KEYS[name].ss58_address and o.kind == "probe"]
              for name in ("solo", "sybil1", "sybil2")}
    assert {name: len(rows) for name, rows in probes.items()} == {"solo": 4, "sybil1": 4, "sybil2": 4}
    assert all(o.task == "ocr" and o.outcome == "ok" and o.units == 1 for rows in probes.values() for o in rows)
    assert len({o.probe for rows in probes.values() for o in rows}) == 1

    parts = tempo_components(observations, ScoreParams())
    throughput = {name: parts[KEYS[name].ss58_address].tasks["ocr"].throughput or 0.0 for name in probes}
    assert 0.5 * IMAGES_PER_SECOND < throughput["solo"] <= 1.05 * IMAGES_PER_SECOND
    assert throughput["sybil1"] + throughput["sybil2"] == pytest.approx(throughput["solo"], rel=0.15)
