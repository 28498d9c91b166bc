"""Probe rounds over real HTTP: real miner apps (Epistula, quotas in real Redis) in front of loopback backends
that serve a fixed amount of work per second shared by every request in flight, as a saturated inference server
does. Two hotkeys in front of one backend measure half its throughput each, and three it serves in turn together
what it does, for chat and for a task served by its own engine (OCR); a miner advertising more concurrency than
its backend admits is measured refusing; a miner whose terms cannot be read gets one reliability failure; what
the round records reaches the scorers' stream."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from bittensor_wallet import Keypair
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from tests.conftest import free_port, serve_asgi
from tests.miner.conftest import neuron, served_neuron

from veilnet.chain.types import Metagraph, NeuronInfo
from veilnet.miner import MetagraphHolder, MinerContext, create_miner_app
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.protocol.capacity import CapacityDocument, ModelOffer
from veilnet.relay import MinerClient, RelayClient
from veilnet.scoring import (
    Observation,
    ScoreParams,
    ScoreState,
    tempo_components,
    update_scores,
    weights_from_scores,
)
from veilnet.settings import EpistulaSettings, MinerSettings, ValidatorSettings
from veilnet.store.scores import ScoreStore
from veilnet.store.validator_pipeline import ValidatorPipeline
from veilnet.tasks.interface import Challenge, ServedTask
from veilnet.tasks.ocr import OCR_MODEL, OcrAnswer, OcrRequest, generate_ocr_challenge, ocr_answer
from veilnet.tasks.registry import task_named
from veilnet.validator.asking import terms_failure
from veilnet.validator.probe import ProbePaces, ProbeTarget, _pool, _stored_paces, plan_probes, probe_once
from veilnet.validator.service import ValidatorContext

VALIDATOR = Keypair.create_from_uri("//ProbingValidator")
KEYS = {name: Keypair.create_from_uri(f"//Probe{name}") for name in ("solo", "sybil1", "sybil2", "liar", "mute")}
RATE = 400.0  # tokens per second each backend generates, however many requests share it
LENGTH = 128  # the default probe length
WINDOW = 2.0  # seconds each chat probe round keeps every miner busy
IMAGES_PER_SECOND = 5.0  # what each OCR backend reads, however many requests share it


class Turns:
    """Who generates the next 8 tokens: every request in flight in turn (a fair share: asyncio.Lock is first
    come, first served), or with ``ranked`` the waiting request of the lowest rank first (an operator serving
    its hotkeys in turn: rank 0's requests, then rank 1's, ...)."""

    def __init__(self, *, ranked: bool = False) -> None:
        self._ranked = ranked
        self._lock = asyncio.Lock()
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._busy = False
        self._order = itertools.count()

    @contextlib.asynccontextmanager
    async def turn(self, rank: int) -> AsyncIterator[None]:
        if not self._ranked:
            async with self._lock:
                yield
            return
        if self._busy or self._waiting:
            handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (rank, next(self._order), handed))
            await handed
        self._busy = True
        try:
            yield
        finally:
            if self._waiting:
                heapq.heappop(self._waiting)[2].set_result(None)  # handed over: still busy
            else:
                self._busy = False


def paced_backend(rate: float, *, ranked: bool = False) -> FastAPI:
    """An OpenAI-compatible chat backend generating ``rate`` tokens/s in all, 8 tokens at a time, shared by the
    requests in flight (:class:`Turns`; ``ranked``: served in turn by the rank in the path, ``/r{rank}/v1``),
    streamed or not as asked."""
    app = FastAPI()
    turns = Turns(ranked=ranked)

    async def steps(tokens: int, rank: int) -> AsyncIterator[str]:
        for start in range(0, tokens, 8):
            async with turns.turn(rank):
                await asyncio.sleep(8 / rate)
            yield " ".join(["word"] * min(8, tokens - start)) + " "

    @app.post("/v1/chat/completions")
    @app.post("/r{rank}/v1/chat/completions")
    async def chat(request: Request, rank: int = 0) -> Any:
        body = await request.json()
        tokens = int(body.get("max_tokens") or 16)
        head = {"id": "chatcmpl-paced", "created": 1, "model": body["model"]}
        usage = {"prompt_tokens": 9, "completion_tokens": tokens, "total_tokens": tokens + 9}
        if not body.get("stream"):
            text = "".join([part async for part in steps(tokens, rank)])
            return {**head, "object": "chat.completion", "usage": usage, "choices": [
                {"index": 0, "finish_reason": "length", "message": {"role": "assistant", "content": text}}]}

        async def events() -> AsyncIterator[bytes]:
            async for part in steps(tokens, rank):
                chunk = {**head, "object": "chat.completion.chunk",
                         "choices": [{"index": 0, "delta": {"content": part}, "finish_reason": None}]}
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            end = {**head, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}
            yield f"data: {json.dumps(end)}\n\n".encode()
            yield f"data: {json.dumps({**head, 'object': 'chat.completion.chunk', 'choices': [], 'usage': usage})}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

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
                            settings: ValidatorSettings, paces: ProbePaces | None = None) -> list[Observation]:
    """One probe round (``paces``: the prober's memory of earlier rounds); returns the observations it left
    (terms) and the probe answers' observations, as the scorers read them from the answers stream (unverified:
    no reference model here)."""
    pipeline = ValidatorPipeline(redis, VALIDATOR.ss58_address, 1, consumer="probe-test")
    ctx = ValidatorContext(keypair=VALIDATOR, chain=StaticChain(graph), netuid=1, reference=None,  # type: ignore[arg-type]
                           http=http, scores=ScoreStore(redis, VALIDATOR.ss58_address, 1), settings=settings,
                           pipeline=pipeline, rng=random.Random(5))
    async with RelayClient() as relay:
        records = await probe_once(ctx, MinerClient(VALIDATOR, relay), paces=paces)
    observations, _ = await pipeline.take_observations()
    claimed = await pipeline.claim_answers(count=1000, block_ms=100)
    assert [r.observation for _, r in claimed] == [r.observation for r in records]
    return observations + [r.observation for _, r in claimed]


async def test_a_probe_round_measures_throughput_sybils_split_and_liars_refuse(redis_client: aioredis.Redis) -> None:
    settings = ValidatorSettings(reference_models=["m"], probe_max_tokens=LENGTH, probe_concurrency=8,
                                 probe_window=WINDOW)
    async with market(redis_client, f"http://127.0.0.1:{free_port()}") as graph, aiohttp.ClientSession() as http:
        observations = await probe_and_collect(redis_client, graph, http, settings)
    by = {name: [o for o in observations if o.miner == key.ss58_address] for name, key in KEYS.items()}
    probes = {name: [o for o in rows if o.kind == "probe"] for name, rows in by.items()}
    # four workers each (the advertised concurrency, under the cap of 8) sending back to back through one window
    assert len(probes["solo"]) >= 8 and len(probes["sybil1"]) >= 4 and len(probes["sybil2"]) >= 4
    assert probes["mute"] == []
    assert len({o.probe for rows in probes.values() for o in rows}) == 1
    assert {o.window_ms for rows in probes.values() for o in rows} == {WINDOW * 1000}
    # each answer says how many the window got, every miner's (so an epoch folds them together)
    assert {o.window_answers for rows in probes.values() for o in rows} == {sum(map(len, probes.values()))}
    honest = [o for name in ("solo", "sybil1", "sybil2") for o in probes[name]]
    assert all(o.outcome == "ok" and o.units == o.max_tokens for o in honest)
    # each request sized to what the miner's streams deliver in a quarter of the window: the first 16 tokens,
    # then (100 tokens/s per stream on A, 50 on B) fewer than the 128 allowed, and none runs long past the window
    assert 16 in {o.max_tokens for o in probes["solo"]}
    assert max(o.max_tokens or 0 for o in honest) < LENGTH
    assert max(o.elapsed_ms or 0.0 for o in honest) < 1.4 * WINDOW * 1000
    # answers ending inside the window count whole, the ones it cut by the share streamed before it closed
    shares = sorted(o.in_window for o in probes["solo"])
    assert shares[-1] == 1.0 and 0.0 <= shares[0] < 1.0
    # its backend admits one at a time: one slot answers, the three others are refused each time they try
    outcomes = [o.outcome for o in probes["liar"]]
    assert outcomes.count("ok") >= 2 and len(outcomes) - outcomes.count("ok") >= 3 * 4
    # terms: the price it charges (blended 0.2); nothing for the miner whose /capacity is silent
    terms = {name: [o for o in rows if o.kind == "terms"] for name, rows in by.items()}
    assert [(o.outcome, o.price_per_million) for o in terms["solo"]] == [("ok", pytest.approx(0.2))]
    assert terms.get("mute", []) == []  # unreadable terms: the challenger records that failure, once a minute
    observations.append(terms_failure(KEYS["mute"].ss58_address))  # what the challenger records for it

    parts = tempo_components(observations, ScoreParams())
    throughput = {name: parts[key.ss58_address].tasks["chat"].throughput or 0.0
                  for name, key in KEYS.items() if name != "mute"}
    assert 0.5 * RATE < throughput["solo"] <= 1.05 * RATE  # what backend A generates (HTTP and a busy loop cost some)
    split = throughput["sybil1"] + throughput["sybil2"]
    assert split == pytest.approx(throughput["solo"], rel=0.1)  # one backend's throughput, split in two
    assert throughput["sybil1"] == pytest.approx(throughput["sybil2"], rel=0.15)
    assert parts[KEYS["liar"].ss58_address].reliability < 0.4
    assert parts[KEYS["mute"].ss58_address].reliability == 0.0

    weights = weights_from_scores(update_scores({}, observations, tempo=1), tempo=1)
    pay = {name: weights[key.ss58_address] for name, key in KEYS.items()}
    assert pay["sybil1"] + pay["sybil2"] == pytest.approx(pay["solo"], rel=0.15)
    assert pay["liar"] < 0.1 * pay["solo"] and pay["mute"] == 0.0


async def test_hotkeys_served_in_turn_measure_no_more_than_their_backend(redis_client: aioredis.Redis) -> None:
    """An operator whose backend serves its three hotkeys in turn (all of the first's requests before any of
    the second's, ...): read to each hotkey's own last answer, the first would look like the whole backend, the
    second like half of it, the third like a third. Read over the round's window, the three together measure
    what one hotkey on the same kind of backend does."""
    validators = (neuron(0, VALIDATOR, 1000, True),)
    async with contextlib.AsyncExitStack() as stack:
        shared = await stack.enter_async_context(serve_asgi(paced_backend(RATE)))
        in_turn = await stack.enter_async_context(serve_asgi(paced_backend(RATE, ranked=True)))
        lanes = {"solo": f"{shared}/v1", **{f"sybil{rank + 1}": f"{in_turn}/r{rank}/v1" for rank in range(3)}}
        served: list[NeuronInfo] = []
        for uid, (name, base) in enumerate(lanes.items(), 1):
            engine = await stack.enter_async_context(OpenAIUpstreamEngine(base, ["m"]))
            ctx = MinerContext(keypair=KEYS.get(name) or Keypair.create_from_uri(f"//Probe{name}"), engine=engine,
                               redis=redis_client, metagraph=MetagraphHolder(Metagraph(1, 0, validators)),
                               settings=MinerSettings(max_concurrency=4), epistula=EpistulaSettings())
            url = await stack.enter_async_context(serve_asgi(create_miner_app(ctx), lifespan="off"))
            served.append(served_neuron(uid, ctx.keypair, url))
        graph = Metagraph(1, 0, (*validators, *served))
        settings = ValidatorSettings(reference_models=["m"], probe_max_tokens=LENGTH, probe_concurrency=8,
                                     probe_window=WINDOW)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        observations = await probe_and_collect(redis_client, graph, http, settings)
    hotkeys = {name: neuron_.hotkey for name, neuron_ in zip(lanes, served, strict=True)}
    probes = {name: [o for o in observations if o.miner == hotkey and o.kind == "probe"]
              for name, hotkey in hotkeys.items()}
    assert all(o.outcome == "ok" for rows in probes.values() for o in rows)
    throughput = {name: tempo_components(rows, ScoreParams())[hotkeys[name]].tasks["chat"].throughput or 0.0
                  for name, rows in probes.items()}
    sybils = sum(throughput[f"sybil{rank + 1}"] for rank in range(3))
    print(f"\nin turn, over the window: {throughput}; the three together {sybils / throughput['solo']:.2f}x solo")
    assert 0.5 * RATE < throughput["solo"] <= 1.05 * RATE
    assert sybils <= 1.05 * throughput["solo"]
    assert throughput["sybil1"] > 0.7 * throughput["solo"]  # the first hotkey really was served first

    # the same answers read to each hotkey's own last answer (no window) reward the order (less than the pure
    # model's 1 + 1/2 + 1/3: the requests the others queued were sized for a quarter of the window, 16 tokens)
    unwindowed = [replace(o, window_ms=None) for rows in probes.values() for o in rows]
    read_to_last = {name: tempo_components(unwindowed, ScoreParams())[hotkey].tasks["chat"].throughput or 0.0
                    for name, hotkey in hotkeys.items()}
    assert sum(read_to_last[f"sybil{rank + 1}"] for rank in range(3)) > 1.1 * read_to_last["solo"]


class PacedReader:
    """An OCR backend reading ``rate`` images per second in all, the images in flight sharing it (each read
    in ten slices, requests taking turns slice by slice, as a batching engine shares itself; with ``turns``
    shared by several readers, one backend behind several hotkeys, ``rank`` being this one's place in turn)."""

    def __init__(self, rate: float, peek: Callable[[], Awaitable[int]] | None = None, *,
                 turns: Turns | None = None, rank: int = 0) -> None:
        self._rate = rate
        self._turns = turns or Turns()
        self._rank = rank
        self._peek = peek  # read as each image arrives, kept in ``peeked``
        self.peeked: list[int] = []

    async def __aenter__(self) -> PacedReader:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def models(self) -> list[str]:
        return [OCR_MODEL]

    async def serve(self, request: OcrRequest) -> OcrAnswer:
        if self._peek is not None:
            self.peeked.append(await self._peek())
        for _ in range(10):
            async with self._turns.turn(self._rank):
                await asyncio.sleep(0.1 / self._rate)
        return ocr_answer("chatcmpl-paced", 1, request.model, "some text")


@contextlib.asynccontextmanager
async def ocr_market(redis: aioredis.Redis, readers: dict[str, PacedReader]) -> AsyncIterator[Metagraph]:
    """A miner per reader (name: hotkey //Probe{name}), each advertising 4 concurrent requests, its chat served
    by one shared paced backend."""
    validators = (neuron(0, VALIDATOR, 1000, True),)
    async with contextlib.AsyncExitStack() as stack:
        chat = await stack.enter_async_context(serve_asgi(paced_backend(RATE)))
        engine = await stack.enter_async_context(OpenAIUpstreamEngine(f"{chat}/v1", ["m"]))
        served: list[NeuronInfo] = []
        for uid, (name, reader) in enumerate(readers.items(), 1):
            key = KEYS.get(name) or Keypair.create_from_uri(f"//Probe{name}")
            ctx = MinerContext(keypair=key, engine=engine, redis=redis,
                               metagraph=MetagraphHolder(Metagraph(1, 0, validators)),
                               settings=MinerSettings(max_concurrency=4), epistula=EpistulaSettings(),
                               tasks={"ocr": ServedTask(task_named("ocr"), reader)})
            url = await stack.enter_async_context(serve_asgi(create_miner_app(ctx), lifespan="off"))
            served.append(served_neuron(uid, key, url))
        yield Metagraph(1, 0, (*validators, *served))


OCR_SETTINGS = ValidatorSettings(reference_models=["m"], probe_concurrency=8, probe_window=WINDOW,
                                 probe_max_tokens=LENGTH, tasks=["chat", "ocr"])


def ocr_throughput(observations: list[Observation], graph: Metagraph) -> dict[int, float]:
    """Uid -> the OCR images per second the round measured."""
    parts = tempo_components([o for o in observations if o.task == "ocr"], ScoreParams())
    return {n.uid: parts[n.hotkey].tasks["ocr"].throughput or 0.0 for n in graph.neurons if n.hotkey in parts}


async def test_every_offered_task_gets_a_window_fed_from_drawn_challenges(redis_client: aioredis.Redis) -> None:
    """OCR (a task served by its own engine, credited per image) gets a window of its own after the chat
    window: solo reads on backend A, sybil1 and sybil2 on backend B, which shares itself between them, so the
    two measure half of B each and together what solo measures. The first round draws two challenges per worker
    and solo empties its pool before the window closes; the next round draws twice what it delivered. The chat
    window's answers are on the scorers' stream before the OCR window begins."""
    answers = ValidatorPipeline(redis_client, VALIDATOR.ss58_address, 1).answers
    shared = PacedReader(IMAGES_PER_SECOND)
    readers = {"solo": PacedReader(IMAGES_PER_SECOND, peek=lambda: redis_client.xlen(answers)),
               "sybil1": shared, "sybil2": shared}
    paces = ProbePaces()
    async with ocr_market(redis_client, readers) as graph, aiohttp.ClientSession() as http:
        rounds = [await probe_and_collect(redis_client, graph, http, OCR_SETTINGS, paces) for _ in range(2)]
    hotkeys = {name: graph.neurons[uid].hotkey for uid, name in enumerate(readers, 1)}
    first, second = ([o for o in observations if o.kind == "probe" and o.task == "ocr"] for observations in rounds)
    chat = [o for o in rounds[0] if o.kind == "probe" and o.task == "chat"]
    assert len(chat) >= 3 * 4 and readers["solo"].peeked[0] == len(chat)
    assert {o.window_ms for o in first + second} == {WINDOW * 1000}
    assert all(o.outcome == "ok" and o.units == 1 for o in first + second)
    sent = [{name: sum(o.miner == hotkey for o in rows) for name, hotkey in hotkeys.items()} for rows in (first, second)]
    # two challenges per worker, then twice the 8 images solo delivered inside the 2 s window (4 per second)
    assert sent[0] == {"solo": 8, "sybil1": 8, "sybil2": 8}
    assert sent[1]["solo"] > 8

    for observations in rounds:
        throughput = ocr_throughput(observations, graph)
        solo, sybils = throughput[1], throughput[2] + throughput[3]
        assert 0.5 * IMAGES_PER_SECOND < solo <= 1.05 * IMAGES_PER_SECOND
        assert sybils == pytest.approx(solo, rel=0.15)


async def test_hotkeys_served_in_turn_measure_no_more_than_their_backend_on_every_task(
        redis_client: aioredis.Redis) -> None:
    """Three hotkeys on one OCR reader serving them in turn (all of the first's images before any of the
    second's): over the OCR window the three together measure what solo measures on a reader of its own. Read
    to each hotkey's own last answer, the same answers would pay the order."""
    turns = Turns(ranked=True)
    readers = {"solo": PacedReader(IMAGES_PER_SECOND),
               **{f"turn{rank}": PacedReader(IMAGES_PER_SECOND, turns=turns, rank=rank) for rank in range(3)}}
    async with ocr_market(redis_client, readers) as graph, aiohttp.ClientSession() as http:
        observations = await probe_and_collect(redis_client, graph, http, OCR_SETTINGS)
    ocr = [o for o in observations if o.kind == "probe" and o.task == "ocr"]
    assert all(o.outcome == "ok" for o in ocr)
    throughput = ocr_throughput(ocr, graph)
    sybils = throughput[2] + throughput[3] + throughput[4]
    print(f"\nOCR in turn, over the window: {throughput}; the three together {sybils / throughput[1]:.2f}x solo")
    assert 0.5 * IMAGES_PER_SECOND < throughput[1] <= 1.05 * IMAGES_PER_SECOND
    assert sybils <= 1.05 * throughput[1]
    assert throughput[2] > 0.7 * throughput[1]  # the first hotkey really was served first

    read_to_last = ocr_throughput([replace(o, window_ms=None) for o in ocr], graph)
    assert read_to_last[2] + read_to_last[3] + read_to_last[4] > 1.3 * read_to_last[1]


def test_embeddings_are_probed_with_the_lane_a_miner_advertises() -> None:
    """A miner whose engine embeds one request at a time (the embedded llama.cpp) says so: its embeddings are
    probed by one worker, its chat by as many as it generates at once; without the field, embeddings get as
    many workers as chat. A task without a share is not probed."""
    def document(key: Keypair, lane: int | None) -> CapacityDocument:
        return CapacityDocument(hotkey=key.ss58_address, models=[ModelOffer(
            id="m", capacity_per_window=1000, price_input_per_million=0.1, price_output_per_million=0.3,
            context_length=4096, embeddings=True, concurrency=4, embedding_concurrency=lane)])

    documents = [(served_neuron(1, KEYS["solo"], "http://127.0.0.1:9"), document(KEYS["solo"], 1)),
                 (served_neuron(2, KEYS["sybil1"], "http://127.0.0.1:9"), document(KEYS["sybil1"], None))]
    targets = plan_probes(documents, {VALIDATOR.ss58_address: 1000}, VALIDATOR.ss58_address,
                          ValidatorSettings(reference_models=["m"]), random.Random(1))
    workers = {(t.neuron.hotkey, t.task): t.requests for t in targets}
    assert workers == {(KEYS["solo"].ss58_address, "chat"): 4, (KEYS["solo"].ss58_address, "embeddings"): 1,
                       (KEYS["sybil1"].ss58_address, "chat"): 4, (KEYS["sybil1"].ss58_address, "embeddings"): 4}
    # a validator that pays nothing for chat measures only what it pays for
    embedding_only = plan_probes(documents, {VALIDATOR.ss58_address: 1000}, VALIDATOR.ss58_address,
                                 ValidatorSettings(reference_models=["m"]), random.Random(1),
                                 task_shares={"chat": 0.0, "embeddings": 1.0})
    assert {(t.neuron.hotkey, t.task): t.requests for t in embedding_only} == {
        (KEYS["solo"].ss58_address, "embeddings"): 1, (KEYS["sybil1"].ss58_address, "embeddings"): 4}


async def test_a_pool_holds_twice_what_the_miner_delivered_within_its_bounds() -> None:
    """The pool for a drawn task's window: two challenges per worker before the miner was measured; then twice
    the units it delivered in its last window, at least one per worker, at most the pool cap and what is left of
    the budget; a challenge larger than the miner takes is left out; drawing stops when the generator fails."""
    picture = generate_ocr_challenge(random.Random(3), model=OCR_MODEL)
    challenge = Challenge(picture.request, picture.truth)
    size = len(picture.request.model_dump_json(exclude_unset=True).encode())
    target = ProbeTarget(served_neuron(1, KEYS["solo"], "http://127.0.0.1:9"), "ocr", OCR_MODEL, requests=4)
    drawn: list[int] = []

    async def draw(_: ProbeTarget) -> Challenge[Any] | None:
        drawn.append(1)
        return challenge

    async def failing(_: ProbeTarget) -> Challenge[Any] | None:
        drawn.append(1)
        return None if len(drawn) > 2 else challenge

    paces = ProbePaces()
    assert paces.goal(target, 2.0) is None
    assert len(await _pool(target, 100, draw, None, 32)) == 8  # two per worker
    paces.rates[(target.neuron.hotkey, "ocr")] = 5.0  # images/s in its last window
    assert paces.goal(target, 2.0) == 20.0
    assert len(await _pool(target, 100, draw, 20.0, 32)) == 20
    assert len(await _pool(target, 100, draw, 100.0, 32)) == 32  # the cap
    assert len(await _pool(target, 12, draw, 100.0, 32)) == 12  # the budget left
    assert len(await _pool(target, 100, draw, 0.0, 32)) == 4  # one per worker
    too_small = replace(target, max_body_bytes=size - 1)
    drawn.clear()
    assert await _pool(too_small, 100, draw, None, 32) == [] and len(drawn) == 32  # tried up to the cap
    drawn.clear()
    assert len(await _pool(target, 100, failing, None, 32)) == 2 and len(drawn) == 3


async def test_a_restarted_prober_sizes_its_first_pools_by_the_stored_throughput(
        redis_client: aioredis.Redis) -> None:
    """The throughput the validator stored for each miner (real Redis) sizes a restarted prober's first pools:
    twice the stored images per second over the window, where a prober without it would draw two a worker."""
    store = ScoreStore(redis_client, VALIDATOR.ss58_address, 1)
    hotkey = KEYS["solo"].ss58_address
    await store.save({hotkey: ScoreState(seen=True, throughput={"chat": 300.0, "ocr": 5.0})}, 3)
    async with aiohttp.ClientSession() as http:
        ctx = ValidatorContext(keypair=VALIDATOR, chain=StaticChain(Metagraph(1, 0, ())), netuid=1, reference=None,  # type: ignore[arg-type]
                               http=http, scores=store, settings=OCR_SETTINGS,
                               pipeline=ValidatorPipeline(redis_client, VALIDATOR.ss58_address, 1))
        paces = await _stored_paces(ctx)
    assert paces.rates == {(hotkey, "ocr"): 5.0}  # chat's windows need no pool
    target = ProbeTarget(served_neuron(1, KEYS["solo"], "http://127.0.0.1:9"), "ocr", OCR_MODEL, requests=4)
    assert paces.goal(target, WINDOW) == 20.0
    # Redis unreachable: the prober starts with the smallest pools, it does not fail
    gone = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        unread = await _stored_paces(replace(ctx, scores=ScoreStore(gone, VALIDATOR.ss58_address, 1)))
    finally:
        await gone.aclose()
    assert unread.rates == {}
