"""Probe rounds over real HTTP: real miner apps (Epistula, quotas in real Redis) in front of loopback
OpenAI-compatible backends that generate a fixed number of tokens per second shared by every request in
flight, as a saturated inference server does. Two hotkeys in front of one backend measure half its throughput
each, for chat and for a task served by its own engine (OCR); a miner advertising more concurrency than its
backend admits is measured refusing; a miner whose terms cannot be read gets one reliability failure; what the
round records reaches the scorers' stream."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
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
WINDOW = 3.0  # seconds of a test round
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
    """One probe round; returns the observations it left (terms, and the probe answers not drawn for
    verification) and the drawn answers' observations, as the scorers read them from the answers stream
    (unverified: no reference model here). Every answer is in one of the two; per miner, as many are drawn
    as it had senders."""
    pipeline = ValidatorPipeline(redis, VALIDATOR.ss58_address, 1, consumer="probe-test")
    ctx = ValidatorContext(keypair=VALIDATOR, chain=StaticChain(graph), netuid=1, reference=None,  # type: ignore[arg-type]
                           http=http, scores=ScoreStore(redis, VALIDATOR.ss58_address, 1), settings=settings,
                           pipeline=pipeline, rng=random.Random(5))
    async with RelayClient() as relay:
        records = await probe_once(ctx, MinerClient(VALIDATOR, relay))
    observations, _ = await pipeline.take_observations()
    claimed = [r.observation for _, r in await pipeline.claim_answers(count=1000, block_ms=100)]
    probes = [o for o in observations if o.kind == "probe"]
    assert sorted(map(repr, claimed + probes)) == sorted(repr(r.observation) for r in records)
    drawn = collections.Counter(o.miner for o in claimed)
    assert all(count <= settings.probe_concurrency for count in drawn.values())
    return observations + claimed


async def test_a_probe_round_measures_throughput_sybils_split_and_liars_refuse(redis_client: aioredis.Redis) -> None:
    settings = ValidatorSettings(reference_models=["m"], probe_max_tokens=LENGTH, probe_concurrency=8,
                                 probe_window=WINDOW)
    async with market(redis_client, f"http://127.0.0.1:{free_port()}") as graph, aiohttp.ClientSession() as http:
        observations = await probe_and_collect(redis_client, graph, http, settings)
    by = {name: [o for o in observations if o.miner == key.ss58_address] for name, key in KEYS.items()}
    probes = {name: [o for o in rows if o.kind == "probe"] for name, rows in by.items()}
    # four senders each (the advertised concurrency, under the cap of 8), each sending again as soon as it is
    # answered until the window closes; one round
    assert len({o.probe for rows in probes.values() for o in rows}) == 1 and probes["mute"] == []
    assert all(o.outcome == "ok" and o.units == LENGTH for name in ("solo", "sybil1", "sybil2") for o in probes[name])
    assert len(probes["solo"]) >= 8 and len(probes["sybil1"]) >= 4 and len(probes["sybil2"]) >= 4
    assert all(o.window_ms == WINDOW * 1000 for rows in probes.values() for o in rows)
    # its backend admits one at a time: three senders are refused at once and stop, one keeps it busy
    outcomes = [o.outcome for o in probes["liar"]]
    assert outcomes.count("error") == 3 and outcomes.count("ok") >= 4
    # terms: the price it charges (blended 0.2); nothing for the miner whose /capacity is silent
    terms = {name: [o for o in rows if o.kind == "terms"] for name, rows in by.items()}
    assert [(o.outcome, o.price_per_million) for o in terms["solo"]] == [("ok", pytest.approx(0.2))]
    assert terms.get("mute", []) == []  # unreadable terms: the challenger records that failure, once a minute
    observations.append(terms_failure(KEYS["mute"].ss58_address))  # what the challenger records for it

    parts = tempo_components(observations, ScoreParams())
    throughput = {name: parts[key.ss58_address].tasks["chat"].throughput or 0.0
                  for name, key in KEYS.items() if name != "mute"}
    # what backend A generates inside the window (answers still running when it closes count nothing)
    assert 0.3 * RATE < throughput["solo"] <= 1.05 * RATE
    split = throughput["sybil1"] + throughput["sybil2"]
    assert 0.4 * throughput["solo"] <= split <= 1.05 * throughput["solo"]  # one backend's throughput, at most
    assert throughput["sybil1"] == pytest.approx(throughput["sybil2"], rel=0.15)
    liar = parts[KEYS["liar"].ss58_address].reliability
    assert liar == pytest.approx(outcomes.count("ok") / len(outcomes)) and liar < 1.0
    assert parts[KEYS["mute"].ss58_address].reliability == 0.0

    weights = weights_from_scores(update_scores({}, observations, tempo=1), tempo=1)
    pay = {name: weights[key.ss58_address] for name, key in KEYS.items()}
    assert pay["sybil1"] + pay["sybil2"] <= 1.05 * pay["solo"]
    assert pay["liar"] < pay["solo"] and pay["mute"] == 0.0


class PacedReader:
    """An OCR backend reading ``rate`` images per second, one at a time. Its operator serves the hotkeys in
    front of it in an order of its choosing: each waiting image of the hotkey with the lower ``rank`` first
    (the schedule that made every burst-measured Sybil look like a whole backend but the last)."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._busy = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = 0

    def for_rank(self, rank: int) -> RankedReader:
        return RankedReader(self, rank)

    async def read(self, rank: int) -> None:
        if self._busy:
            self._arrivals += 1
            turn = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (rank, self._arrivals, turn))
            await turn
        self._busy = True
        await asyncio.sleep(1 / self._rate)
        if self._waiting:
            heapq.heappop(self._waiting)[2].set_result(None)
        else:
            self._busy = False


@dataclass
class RankedReader:
    """The task handler one hotkey puts in front of a shared :class:`PacedReader`."""

    backend: PacedReader
    rank: int

    async def __aenter__(self) -> RankedReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def models(self) -> list[str]:
        return [OCR_MODEL]

    async def serve(self, request: OcrRequest) -> OcrAnswer:
        await self.backend.read(self.rank)
        return ocr_answer("chatcmpl-paced", 1, request.model, "some text")


async def test_a_probe_round_bursts_every_offered_task_so_sybils_split_its_backend_too(
        redis_client: aioredis.Redis) -> None:
    """OCR (a task served by its own engine, credited per image) in the same round: solo reads on backend A,
    sybil1 and sybil2 on backend B, whose operator serves sybil1's images first. Each hotkey gets its
    advertised concurrency of senders of the task's own challenges for the window, so however B orders them
    the two together measure no more than solo."""
    validators = (neuron(0, VALIDATOR, 1000, True),)
    a, b = PacedReader(IMAGES_PER_SECOND), PacedReader(IMAGES_PER_SECOND)
    readers = {"solo": a.for_rank(0), "sybil1": b.for_rank(0), "sybil2": b.for_rank(1)}
    async with contextlib.AsyncExitStack() as stack:
        chat = await stack.enter_async_context(serve_asgi(paced_backend(RATE)))
        engine = await stack.enter_async_context(OpenAIUpstreamEngine(f"{chat}/v1", ["m"]))
        served: list[NeuronInfo] = []
        for uid, name in enumerate(("solo", "sybil1", "sybil2"), 1):
            ctx = MinerContext(keypair=KEYS[name], engine=engine, redis=redis_client,
                               metagraph=MetagraphHolder(Metagraph(1, 0, validators)),
                               settings=MinerSettings(max_concurrency=4), epistula=EpistulaSettings(),
                               tasks={"ocr": ServedTask(task_named("ocr"), readers[name])})
            url = await stack.enter_async_context(serve_asgi(create_miner_app(ctx), lifespan="off"))
            served.append(served_neuron(uid, KEYS[name], url))
        graph = Metagraph(1, 0, (*validators, *served))
        # no chat reference model in common: the round is OCR's alone
        settings = ValidatorSettings(reference_models=["not-served"], probe_concurrency=8, tasks=["chat", "ocr"],
                                     probe_window=WINDOW)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        observations = await probe_and_collect(redis_client, graph, http, settings)
    probes = {name: [o for o in observations if o.miner == KEYS[name].ss58_address and o.kind == "probe"]
              for name in ("solo", "sybil1", "sybil2")}
    assert all(o.task == "ocr" and o.outcome == "ok" and o.units == 1 for rows in probes.values() for o in rows)
    assert len({o.probe for rows in probes.values() for o in rows}) == 1
    assert len(probes["solo"]) >= 8 and len(probes["sybil1"]) >= 8  # sybil1 is served first, without a pause

    parts = tempo_components(observations, ScoreParams())
    throughput = {name: parts[KEYS[name].ss58_address].tasks.get("ocr") for name in probes}
    rates = {name: (t.throughput or 0.0) if t is not None else 0.0 for name, t in throughput.items()}
    assert 0.5 * IMAGES_PER_SECOND < rates["solo"] <= 1.05 * IMAGES_PER_SECOND
    assert rates["sybil1"] + rates["sybil2"] <= 1.05 * rates["solo"]
