"""Probe rounds: the validator measures each miner's throughput instead of believing its capacity document.

About every ``probe_interval`` seconds (at random, so a miner cannot wait for it) the validator reads every
served miner's terms (``/capacity``) and then keeps **every miner busy through the same window**
(``probe_window`` seconds): per miner as many workers as it advertises running at once
(``ModelOffer.concurrency``; for embeddings ``embedding_concurrency`` where it says fewer), at most
``probe_concurrency`` and at most this validator's synthetic share of its quota, each sending requests back to
back (chat: streamed, each asking for what the miner's streams deliver in a quarter of the window or in what is
left of it, at most ``probe_max_tokens`` tokens, so no probe holds a slot long past the window; embeddings: a
few texts) until the window closes or the share is spent (the challenger spends the same share: both take from
one :class:`~veilnet.validator.pacing.SentLedger`); a worker whose request is refused tries again an eighth of
the window later. Each answer becomes an observation of kind ``probe`` carrying the round, its window, the units
it delivered (chat: completion tokens, never more than asked nor than the answer's bytes, the scorer replacing
them with its recount when it verifies the answer; embeddings: the inputs embedded) and the share of them that
arrived inside the window (a stream: its content bytes before the window closed; a whole answer: all or
nothing); a refusal (429, 503, another status), a timeout or a broken connection is a failure inside the
advertised capacity. :mod:`veilnet.scoring` divides what a miner delivered inside the window by the window, the
same span for every miner: hotkeys in front of one backend together cannot deliver more in it than the backend
does, whether it shares itself among them or serves them in turn. Every other task the miner offers (an
installed task the validator scores) gets a window of its own after those, its workers fed from a pool of the
task's challenges that its generator drew before the window (drawing them as they are sent would cost the
validator too much: a picture for OCR, a generation for AI-content detection): twice the units the miner
delivered in its last window (:class:`ProbePaces`, which a restarted prober takes from the stored throughput;
for a miner never measured, two per worker), at most ``probe_pool_max``. A miner that empties its pool before
the window closes reads as capped in that round and gets twice as many challenges in the next.

Probe answers go to the scorers like challenge answers (same stream, same sampled verification), and every
read of the terms becomes an observation of kind ``terms``: the price each offered model charges, or one
reliability failure when the document cannot be read. The requests go through the gateway's
:class:`~veilnet.relay.MinerClient`, built like organic requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import aiohttp
from bittensor_wallet import Keypair
from pydantic import ValidationError
from redis.exceptions import RedisError

from veilnet import cancelling
from veilnet.chain import errors as ce
from veilnet.chain.interface import Chain
from veilnet.chain.types import NeuronInfo
from veilnet.errors import StoreError, VeilnetError
from veilnet.logs import log_event
from veilnet.protocol import paths
from veilnet.protocol.capacity import CapacityDocument, ModelOffer
from veilnet.protocol.epistula import verify_response, verify_stream
from veilnet.protocol.openai import ChatCompletionRequest, EmbeddingRequest
from veilnet.quotas import quota_for, synthetic_budget, validator_stakes
from veilnet.relay import MinerClient, MinerDeadlines, RelayClient, RelayError, RelayResponse
from veilnet.scoring import Observation, Outcome, ScoreState, round_rate
from veilnet.settings import ValidatorSettings
from veilnet.store.organic import RequestCounter
from veilnet.store.scores import ScoreStore
from veilnet.store.validator_pipeline import ChallengeRecord, ValidatorPipeline
from veilnet.tasks.challenges import PromptPool, challenge_request, embeddings_texts
from veilnet.tasks.interface import Challenge, ChallengeTools
from veilnet.tasks.registry import installed_tasks, task_named
from veilnet.tasks.stream import assemble_sse_body, streamed_content_bytes
from veilnet.validator.asking import draw_challenge, send_challenge
from veilnet.validator.pacing import SentLedger, window_start

__all__ = [
    "BUILT_TASKS",
    "ProbeContext",
    "ProbePaces",
    "ProbeTarget",
    "blended_price",
    "plan_probes",
    "probe_once",
    "probe_round",
    "probed_tasks",
    "run_prober",
    "terms_observations",
]

log = logging.getLogger(__name__)

#: Tasks whose probe requests the validator builds as it sends them (a prompt, a few texts); every other task's
#: window is fed from challenges its generator drew before the window (they cost too much to draw as sent).
BUILT_TASKS = ("chat", "embeddings")


class ProbeContext(Protocol):
    """What a prober needs of the validator's context (:class:`veilnet.validator.ValidatorContext` has it)."""

    keypair: Keypair
    chain: Chain
    netuid: int
    http: aiohttp.ClientSession
    settings: ValidatorSettings
    pipeline: ValidatorPipeline
    rng: random.Random
    request_timeout: float
    synthetic_counts: RequestCounter | None
    organic_counts: RequestCounter | None
    ledger: SentLedger  # shared with the challenger: one synthetic budget
    scores: ScoreStore  # the stored throughput sizes a restarted prober's first pools
    prompt_pool: PromptPool | None
    reference: Any  # the validator's engine, for tasks whose challenges a model writes


@dataclass(frozen=True)
class ProbeTarget:
    """``requests`` workers sending ``task`` requests for ``model`` to ``neuron`` back to back through a round's
    window, at most ``budget`` in all; a request larger than ``max_body_bytes``, which the miner would refuse,
    is not sent. ``limit``: the synthetic requests this validator may send the miner in a quota window of
    ``window_seconds`` (its share of the quota, after organic traffic), which the round takes from together with
    the challenger."""

    neuron: NeuronInfo
    task: str  # chat, embeddings or another installed task
    model: str
    requests: int
    max_body_bytes: int | None = None
    budget: int | None = None  # None: ``requests``
    limit: int | None = None  # None: only ``budget``
    window_seconds: int = 60


def blended_price(offer: ModelOffer, task: str) -> float:
    """What the miner charges per million tokens of a typical request (USD): embeddings pay for input only;
    chat for prompt and completion in equal parts (the gateway bills both at these prices)."""
    if task == "embeddings":
        return offer.price_input_per_million
    return (offer.price_input_per_million + offer.price_output_per_million) / 2


def terms_observations(hotkey: str, document: CapacityDocument | None, models: Sequence[str]) -> list[Observation]:
    """One read of a miner's terms as observations: its price for each reference model it offers (per task).
    Terms that cannot be read give none here: the challenger records that failure, at most once a minute
    (:func:`veilnet.validator.asking.terms_failure`), so a round never counts it twice."""
    if document is None:
        return []
    out = []
    for offer in document.models:
        if offer.id not in models:
            continue
        for task in ("chat", "embeddings") if offer.embeddings else ("chat",):
            out.append(Observation(miner=hotkey, model=offer.id, task=task, outcome="ok", kind="terms",
                                   price_per_million=blended_price(offer, task)))
    return out


def probed_tasks(settings: ValidatorSettings) -> frozenset[str]:
    """The installed tasks besides chat and embeddings that this validator scores (``settings.tasks``; None:
    every installed one): probe rounds send their challenges too."""
    return frozenset(name for name, task in installed_tasks().items()
                     if not task.language_model and (settings.tasks is None or name in settings.tasks))


def plan_probes(documents: Sequence[tuple[NeuronInfo, CapacityDocument]], stakes: dict[str, int], me: str,
                settings: ValidatorSettings, rng: random.Random, *, task_shares: dict[str, float] | None = None,
                tasks: frozenset[str] = frozenset(), used: Mapping[str, tuple[int, int]] | None = None,
                ) -> list[ProbeTarget]:
    """Who gets how many requests in a round: per miner one reference model it offers (chosen at random), as
    many concurrent requests as it advertises running at once, at most ``probe_concurrency`` and this
    validator's synthetic budget at the miner for the quota window (:func:`veilnet.quotas.synthetic_budget`
    after what ``used`` says its organic and synthetic requests took of the window so far), which also bounds
    the round's total and is split evenly among the miner's windowed targets; embeddings too where the miner
    embeds with that model and embeddings have a share; and per offer of one of ``tasks``, that task's
    challenges by the same rule. A task ``task_shares`` gives no share (0) is not probed: it earns nothing."""
    shares = settings.task_shares if task_shares is None else task_shares

    def target(neuron: NeuronInfo, task: str, offer: ModelOffer, window_seconds: int,
               max_body: int | None = None) -> ProbeTarget | None:
        organic, synthetic = (used or {}).get(neuron.hotkey, (0, 0))
        quota = quota_for(offer.capacity_per_window, stakes, me)
        budget = synthetic_budget(quota, organic, synthetic, synthetic_share=settings.synthetic_share)
        limit = synthetic_budget(quota, organic, 0, synthetic_share=settings.synthetic_share)
        lane = offer.embedding_concurrency if task == "embeddings" else None
        size = min(lane or offer.concurrency, offer.concurrency, settings.probe_concurrency, budget)
        return (ProbeTarget(neuron, task, offer.id, size, max_body, budget, limit, window_seconds)
                if size >= 1 else None)

    targets: list[ProbeTarget] = []
    for neuron, document in documents:
        offers = [o for o in document.models if o.id in settings.reference_models and o.task == "chat"]
        offer = rng.choice(offers) if offers else None
        windowed: list[ProbeTarget | None] = []
        if offer is not None:
            if shares.get("chat", 1.0) > 0:
                windowed.append(target(neuron, "chat", offer, document.window_seconds))
            if offer.embeddings and shares.get("embeddings", 0.0) > 0 and settings.embedding_share > 0:
                windowed.append(target(neuron, "embeddings", offer, document.window_seconds))
        kept = [t for t in windowed if t is not None]
        targets += [replace(t, budget=max(t.requests, (t.budget or 0) // len(kept))) for t in kept]
        targets += [t for t in (target(neuron, o.task, o, document.window_seconds, document.max_body_bytes)
                                for o in document.models
                                if o.task in tasks and shares.get(o.task, 1.0) > 0) if t is not None]
    return targets


def _request(target: ProbeTarget, rng: random.Random, max_tokens: int,
             pool: PromptPool | None) -> ChatCompletionRequest | EmbeddingRequest:
    if target.task == "embeddings":
        return EmbeddingRequest(model=target.model, input=embeddings_texts(rng))
    fields = challenge_request(target.model, rng, pool=pool).model_dump(mode="json", exclude_unset=True)
    fields.pop("max_completion_tokens", None)
    # streamed answers of the length the validator chooses (an answer may still stop earlier where it ends)
    return ChatCompletionRequest.model_validate({**fields, "stream": True, "stream_options": {"include_usage": True},
                                                 "max_tokens": max_tokens})


def _delivered(request: ChatCompletionRequest | EmbeddingRequest, answer: dict[str, Any]) -> tuple[int, int]:
    """(claimed completion tokens, units delivered): a chat answer delivers at most what was asked for and
    at most one token per byte of its text (+1 for its end); an embeddings answer the inputs it embedded."""
    if isinstance(request, EmbeddingRequest):
        data = answer["data"]
        if not isinstance(data, list):
            raise TypeError("data is not a list")
        inputs = len(request.input) if isinstance(request.input, list) else 1
        return 0, min(len(data), inputs)
    claimed = int(answer["usage"]["completion_tokens"])
    text = answer["choices"][0]["message"].get("content") or ""
    if not isinstance(text, str):
        raise TypeError("the answer's content is not text")
    return claimed, max(0, min(claimed, request.max_tokens or claimed, len(text.encode()) + 1))


@dataclass(frozen=True)
class _Round:
    """One window of a round: the round's id, the window's clock (perf_counter when it began) and its length in
    seconds."""

    id: str
    start: float
    window: float

    @property
    def open(self) -> bool:
        return self.left > 0

    @property
    def left(self) -> float:
        """Seconds left of the window."""
        return max(0.0, self.start + self.window - time.perf_counter())

    def observed(self, observation: Observation, arrivals: Sequence[tuple[float, int]] = (),
                 body: bytes = b"") -> Observation:
        """``observation`` as one of this round's: kind probe, elapsed from the window's start to the answer's
        last byte (``arrivals``: when each block came, as (perf_counter, bytes so far); none: now), the window
        and the share of the answer inside it (a stream, ``body`` given: its content bytes that had come when
        the window closed; a whole answer: all when it ended inside, else none)."""
        ended = arrivals[-1][0] if arrivals else time.perf_counter()
        observed = replace(observation, kind="probe", probe=self.id, elapsed_ms=(ended - self.start) * 1000)
        closes = self.start + self.window
        if ended <= closes:
            share = 1.0
        elif body:
            before = max((size for at, size in arrivals if at <= closes), default=0)
            total = streamed_content_bytes(body)
            share = streamed_content_bytes(body[:before]) / total if total else 0.0
        else:
            share = 0.0
        return replace(observed, window_ms=self.window * 1000, in_window=share)


async def _timed(response: RelayResponse) -> tuple[bytes, list[tuple[float, int]]]:
    """The whole body, and when each block came (perf_counter, bytes so far)."""
    parts: list[bytes] = []
    arrivals: list[tuple[float, int]] = []
    size = 0
    async for block in response.blocks():
        parts.append(block)
        size += len(block)
        arrivals.append((time.perf_counter(), size))
    return b"".join(parts), arrivals


async def _probe_one(miners: MinerClient, target: ProbeTarget, request: ChatCompletionRequest | EmbeddingRequest,
                     round_: _Round) -> ChallengeRecord:
    """One chat or embeddings request of the round."""
    assert target.neuron.axon is not None
    hotkey = target.neuron.hotkey
    max_tokens = request.max_tokens if isinstance(request, ChatCompletionRequest) else None
    seen = Observation(miner=hotkey, model=target.model, task=target.task, outcome="ok", max_tokens=max_tokens)
    try:
        uuid, response = await miners.exchange(target.neuron.axon.url, hotkey, request)
        try:
            if response.status != 200:
                refused: Outcome = "rate_limited" if response.status == 429 else "error"
                return ChallengeRecord(round_.observed(replace(seen, outcome=refused)))
            content, arrivals = await _timed(response)
        finally:
            response.release()
    except TimeoutError:
        return ChallengeRecord(round_.observed(replace(seen, outcome="timeout")))
    except RelayError:
        return ChallengeRecord(round_.observed(replace(seen, outcome="error")))
    caller = miners.keypair.ss58_address
    body = b""
    try:
        if getattr(request, "stream", False):
            body = verify_stream(content, request_uuid=uuid, caller=caller, signer=hotkey)
            answer: Any = assemble_sse_body(body)
        else:
            verify_response(response.headers, content, request_uuid=uuid, caller=caller, expected_signer=hotkey)
            answer = json.loads(content)
        if not isinstance(answer, dict):
            raise TypeError("the answer is not a JSON object")
        claimed, units = _delivered(request, answer)
    except (VeilnetError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        # an unsigned, mis-signed or malformed answer is a failed verification, not a network error
        return ChallengeRecord(replace(round_.observed(seen, arrivals), verified=False, quality=0.0))
    observation = replace(round_.observed(seen, arrivals, body), completion_tokens=claimed, units=units)
    return ChallengeRecord(observation, request.model_dump(mode="json", exclude_unset=True), answer)


@dataclass
class _Allowance:
    """What is left of a target's budget for the round; with a ``ledger``, each request is also taken from
    what the validator may still send the miner in the current quota window (``target.limit``), the
    challenger's requests included."""

    target: ProbeTarget
    ledger: SentLedger | None
    left: int = field(init=False)

    def __post_init__(self) -> None:
        self.left = self.target.budget if self.target.budget is not None else self.target.requests

    def take(self) -> bool:
        if self.left <= 0:
            return False
        if self.ledger is not None and self.target.limit is not None:
            hotkey = self.target.neuron.hotkey
            start = window_start(int(time.time() * 1000), self.target.window_seconds)
            if self.ledger.sent(hotkey, start) >= self.target.limit:
                return False
            self.ledger.add(hotkey, start, "probe")
        self.left -= 1
        return True


FIRST_TOKENS = 16  # a chat probe request's length before the miner's pace in the window is known
FLOOR_TOKENS = 8


@dataclass
class _Lengths:
    """How many tokens a chat target's next request in the window asks for: what one of its streams delivers,
    at the rate its streams ran so far in this window, in a quarter of the window or in what is left of it if
    less; at least ``FLOOR_TOKENS`` and at most ``most`` (before any of its streams has ended:
    ``FIRST_TOKENS``). A stream asked for more would run on past the window, where nothing it delivers is
    credited, holding a slot that organic requests wait for; so no probe request holds a slot for much more
    than a quarter of the window, whatever the miner's speed."""

    most: int
    tokens: int = 0
    seconds: float = 0.0

    def ran(self, tokens: int, seconds: float) -> None:
        self.tokens += tokens
        self.seconds += seconds

    def ask(self, left: float, window: float) -> int:
        if self.tokens <= 0 or self.seconds <= 0:
            return min(self.most, FIRST_TOKENS)
        wanted = math.ceil(self.tokens / self.seconds * min(left, window / 4))
        return max(min(self.most, FLOOR_TOKENS), min(self.most, wanted))


#: A chat or embeddings request for a target, asking for at most this many tokens (chat).
Build = Callable[[ProbeTarget, int], ChatCompletionRequest | EmbeddingRequest]


class _Source(Protocol):
    """Where a target's workers get their next request in a window."""

    target: ProbeTarget

    def ready(self) -> bool:
        """Whether there is a next request."""

    async def send(self, round_: _Round) -> ChallengeRecord:
        """Send the next request and record its answer as one of the round's."""


@dataclass
class _Built:
    """A chat or embeddings target's requests, built as they are sent, each as long as ``lengths`` says."""

    miners: MinerClient
    target: ProbeTarget
    build: Build
    lengths: _Lengths

    def ready(self) -> bool:
        return True

    async def send(self, round_: _Round) -> ChallengeRecord:
        sent = time.perf_counter()
        request = self.build(self.target, self.lengths.ask(round_.left, round_.window))
        record = await _probe_one(self.miners, self.target, request, round_)
        if record.observation.outcome == "ok" and record.observation.units:
            self.lengths.ran(record.observation.units, time.perf_counter() - sent)
        return record


@dataclass
class _Drawn:
    """Another task's target: the challenges drawn for it before the window, sent until none is left."""

    miners: MinerClient
    target: ProbeTarget
    challenges: list[Challenge[Any]]

    def ready(self) -> bool:
        return bool(self.challenges)

    async def send(self, round_: _Round) -> ChallengeRecord:
        return await _probe_task(self.miners, self.target, self.challenges.pop(), round_)


async def _worker(source: _Source, allowance: _Allowance, round_: _Round) -> list[ChallengeRecord]:
    """One of a target's workers: requests back to back while the window is open, the source has one and the
    budget lasts; after a refused or failed request it tries again an eighth of the window later (a slot the
    miner advertised but does not have fails in proportion to the time it is missing)."""
    records = []
    while round_.open and source.ready() and allowance.take():
        record = await source.send(round_)
        records.append(record)
        if record.observation.outcome != "ok":
            await asyncio.sleep(round_.window / 8)
    return records


async def _window(sources: Sequence[tuple[_Source, _Allowance]], rng: random.Random,
                  round_: _Round) -> list[ChallengeRecord]:
    """Every target kept busy through the round's window by as many workers as its ``requests``, the workers
    started in random order across targets (a backend serving in arrival order favours none)."""
    workers = [(source, allowance) for source, allowance in sources for _ in range(source.target.requests)]
    rng.shuffle(workers)
    done = await asyncio.gather(*(_worker(source, allowance, round_) for source, allowance in workers))
    return [record for records in done for record in records]


async def _probe_task(miners: MinerClient, target: ProbeTarget, challenge: Challenge[Any],
                      round_: _Round) -> ChallengeRecord:
    """One challenge of another task in its window, sent as the challenger sends it, recorded as a probe."""
    kind = task_named(target.task)
    record = await send_challenge(miners, target.neuron, challenge.request, task=target.task, path=kind.miner_path,
                                  units=kind.units(challenge.request), truth=challenge.truth)
    return replace(record, observation=round_.observed(record.observation))


Draw = Callable[[ProbeTarget], Awaitable["Challenge[Any] | None"]]


@dataclass
class ProbePaces:
    """Units per second each miner delivered of each drawn task (every task but chat and embeddings) in its
    last window, by (hotkey, task): the prober's memory across rounds, which sizes the next pools."""

    rates: dict[tuple[str, str], float] = field(default_factory=dict)

    @classmethod
    def stored(cls, states: Mapping[str, ScoreState]) -> ProbePaces:
        """Paces from the throughput the validator stored for each miner (its last tempo's mean over rounds), so
        a restarted prober's first pools are sized as its last ones were."""
        return cls({(hotkey, task): rate for hotkey, state in states.items()
                    for task, rate in state.throughput.items() if task not in BUILT_TASKS})

    def record(self, part: Sequence[ChallengeRecord]) -> None:
        members: dict[tuple[str, str], list[Observation]] = {}
        for record in part:
            members.setdefault((record.observation.miner, record.observation.task), []).append(record.observation)
        self.rates.update({key: round_rate(rows) for key, rows in members.items()})

    def goal(self, target: ProbeTarget, window: float) -> float | None:
        """The units to draw for ``target``'s next window: twice what it delivered in its last one, so a miner
        that ran out of challenges before the window closed gets twice as many next time (None: not measured
        yet)."""
        rate = self.rates.get((target.neuron.hotkey, target.task))
        return None if rate is None else 2 * rate * window


async def _pool(target: ProbeTarget, left: int, draw: Draw, goal: float | None, most: int) -> list[Challenge[Any]]:
    """The challenges drawn for a target's window: ``goal`` units' worth and one per worker at least (``goal``
    None: two per worker), at most ``most`` and ``left`` (what is left of the target's budget); those the miner
    would refuse as too large are left out. Drawing stops at the first challenge the generator cannot draw."""
    cap = min(most, left)
    least = min(cap, target.requests if goal is not None else 2 * target.requests)
    kind = task_named(target.task)
    pool: list[Challenge[Any]] = []
    units = 0.0
    for _ in range(cap):
        if len(pool) >= least and units >= (goal or 0.0):
            break
        challenge = await draw(target)
        if challenge is None:
            break
        size = len(challenge.request.model_dump_json(exclude_unset=True).encode())
        if target.max_body_bytes is None or size <= target.max_body_bytes:
            pool.append(challenge)
            units += kind.units(challenge.request)
    return pool


Deliver = Callable[[Sequence[ChallengeRecord]], Awaitable[None]]


async def probe_round(miners: MinerClient, targets: Sequence[ProbeTarget], rng: random.Random, *,
                      max_tokens: int, window: float, pool: PromptPool | None = None, round_id: str | None = None,
                      draw: Draw | None = None, ledger: SentLedger | None = None, deliver: Deliver | None = None,
                      paces: ProbePaces | None = None, pool_max: int = 32) -> list[ChallengeRecord]:
    """One round: a ``window``-second window for chat, then one for embeddings, then one per other task (in
    name order), every target kept busy through each. Another task's targets are fed from pools drawn by
    ``draw`` before its window (sized by ``paces``, at most ``pool_max`` each; the window's rates are then
    recorded in ``paces``). Each request is taken from its target's budget and, with a ``ledger``, from its
    limit (see :class:`ProbeTarget`). Each window's records go to ``deliver`` as soon as it ends (the scorers
    need not wait for the round); all are returned."""
    round_id = round_id or f"{int(time.time() * 1000)}-{rng.randrange(1 << 32):08x}"
    paces = paces if paces is not None else ProbePaces()
    records: list[ChallengeRecord] = []
    allowances = [_Allowance(t, ledger) for t in targets]

    async def ended(answers: list[ChallengeRecord]) -> None:
        # each answer says how many the window got, so an epoch folds the window's answers together
        part = [replace(r, observation=replace(r.observation, window_answers=len(answers))) for r in answers]
        records.extend(part)
        if deliver is not None and part:
            await deliver(part)

    def build(target: ProbeTarget, asked: int) -> ChatCompletionRequest | EmbeddingRequest:
        return _request(target, rng, asked, pool)

    for task in BUILT_TASKS:
        built: list[tuple[_Source, _Allowance]] = [(_Built(miners, a.target, build, _Lengths(max_tokens)), a)
                                                   for a in allowances if a.target.task == task]
        if built:
            await ended(await _window(built, rng, _Round(round_id, time.perf_counter(), window)))
    if draw is None:
        return records
    for task in sorted({t.task for t in targets} - set(BUILT_TASKS)):
        drawn: list[tuple[_Source, _Allowance]] = []
        for allowance in (a for a in allowances if a.target.task == task):
            target = allowance.target
            challenges = await _pool(target, allowance.left, draw, paces.goal(target, window), pool_max)
            drawn.append((_Drawn(miners, target, challenges), allowance))
        part = await _window(drawn, rng, _Round(round_id, time.perf_counter(), window))
        paces.record(part)
        await ended(part)
    return records


async def _terms(http: aiohttp.ClientSession, neuron: NeuronInfo) -> CapacityDocument | None:
    """The miner's capacity document; None when it does not answer, answers nonsense or names another hotkey."""
    assert neuron.axon is not None
    try:
        async with http.get(f"{neuron.axon.url}{paths.CAPACITY}", timeout=aiohttp.ClientTimeout(total=10)) as response:
            document = CapacityDocument.model_validate_json(await response.read())
    except (aiohttp.ClientError, TimeoutError, ValidationError):
        return None
    return document if document.hotkey == neuron.hotkey else None


async def _used(ctx: ProbeContext, hotkey: str, window_seconds: int) -> tuple[int, int]:
    """The organic and synthetic requests this validator sent ``hotkey`` in its quota window so far (synthetic:
    what Redis counted or, more where not yet flushed, what the ledger holds)."""
    start_ms = window_start(int(time.time() * 1000), window_seconds)
    organic = await ctx.organic_counts.used(hotkey, start_ms) if ctx.organic_counts is not None else 0
    synthetic = await ctx.synthetic_counts.used(hotkey, start_ms) if ctx.synthetic_counts is not None else 0
    return organic, max(synthetic, ctx.ledger.sent(hotkey, start_ms))


async def probe_once(ctx: ProbeContext, miners: MinerClient, *, task_shares: dict[str, float] | None = None,
                     paces: ProbePaces | None = None) -> list[ChallengeRecord]:
    """Read every served miner's terms (recorded as observations), probe them all in one round and put the
    answers on the scorers' stream (each window's as it ends). ``paces``: what the last rounds measured, which
    sizes this round's pools of drawn challenges (and is updated). Returns the round's records."""
    me = ctx.keypair.ss58_address
    metagraph = await ctx.chain.get_metagraph(ctx.netuid)
    neurons = [n for n in metagraph.neurons if n.hotkey != me and n.axon is not None and n.axon.is_served]
    documents = await asyncio.gather(*(_terms(ctx.http, n) for n in neurons))
    for neuron, document in zip(neurons, documents, strict=True):
        for observation in terms_observations(neuron.hotkey, document, ctx.settings.reference_models):
            await ctx.pipeline.add_observation(observation)
    readable = [(n, d) for n, d in zip(neurons, documents, strict=True) if d is not None]
    used = {n.hotkey: await _used(ctx, n.hotkey, d.window_seconds) for n, d in readable}
    targets = plan_probes(readable, validator_stakes(metagraph.neurons), me, ctx.settings, ctx.rng,
                          task_shares=task_shares, tasks=probed_tasks(ctx.settings), used=used)

    async def draw(target: ProbeTarget) -> Challenge[Any] | None:
        tools = ChallengeTools(rng=ctx.rng, model=target.model, engine=ctx.reference)
        return await draw_challenge(target.task, tools)

    async def deliver(part: Sequence[ChallengeRecord]) -> None:
        await ctx.pipeline.add_answers(list(part))

    records = await probe_round(miners, targets, ctx.rng, max_tokens=ctx.settings.probe_max_tokens,
                                window=ctx.settings.probe_window, pool=ctx.prompt_pool, draw=draw,
                                ledger=ctx.ledger, deliver=deliver, paces=paces,
                                pool_max=ctx.settings.probe_pool_max)
    log_event(log, "probe round", miners=len(readable), requests=len(records),
              failures=sum(1 for r in records if r.observation.outcome != "ok"))
    return records


RETRY_SECONDS = 15.0

# a dependency's failure: the round is skipped and the next one comes at its time
_SKIPPED: tuple[type[BaseException], ...] = (ce.ChainUnavailable, StoreError, RedisError, OSError)


async def _stored_paces(ctx: ProbeContext) -> ProbePaces:
    """The paces the stored scores give; none when they cannot be read (the first pools then hold two
    challenges per worker)."""
    try:
        states, _ = await ctx.scores.load()
    except _SKIPPED as exc:
        log_event(log, "stored throughput unreadable: first pools at their smallest", logging.WARNING,
                  error=f"{type(exc).__name__}: {exc}")
        return ProbePaces()
    return ProbePaces.stored(states)


async def run_prober(ctx: ProbeContext, miners: MinerClient | None = None, *,
                     task_shares: dict[str, float] | None = None) -> None:
    """Probe rounds until cancelled: the first at once, then every ``probe_interval`` seconds x U(0.5, 1.5)
    (after a round that probed no one, or failed: ``RETRY_SECONDS`` x U(0.5, 1.5)).
    Without ``miners`` a MinerClient over its own RelayClient is opened (and closed) here; either way each
    request counts in ``ctx.synthetic_counts``."""
    async with contextlib.AsyncExitStack() as stack:
        if miners is None:
            relay = await stack.enter_async_context(RelayClient())
            counts = ctx.synthetic_counts
            timeout = ctx.request_timeout
            miners = MinerClient(ctx.keypair, relay, MinerDeadlines(total=timeout, first_byte=timeout, idle=timeout),
                                 on_send=counts.count if counts is not None else None)
        paces = await _stored_paces(ctx)
        while True:
            cancelling.raise_if_stopping()  # a cancellation lost inside the last round ends the prober here
            records: list[ChallengeRecord] = []
            try:
                records = await probe_once(ctx, miners, task_shares=task_shares, paces=paces)
            except _SKIPPED as exc:
                if cancelling.stopping():  # the failure came with a cancellation: the prober ends
                    raise asyncio.CancelledError from exc
                log_event(log, "probe round skipped", logging.WARNING, error=f"{type(exc).__name__}: {exc}")
            # a round that probed no one (no permit, hence no quota yet; no miner reachable) comes again soon
            interval = ctx.settings.probe_interval if records else min(ctx.settings.probe_interval, RETRY_SECONDS)
            await asyncio.sleep(interval * ctx.rng.uniform(0.5, 1.5))
