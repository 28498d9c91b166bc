"""Probe rounds: the validator measures each miner's throughput instead of believing its capacity document.

About every ``probe_interval`` seconds (at random, so a miner cannot wait for it) the validator reads every
served miner's terms (``/capacity``) and then hits **every miner at the same moment** with a burst of
concurrent requests: as many as the miner advertises it runs at once (``ModelOffer.concurrency``), at most
``probe_concurrency`` and at most this validator's quota for the window, each asking for ``probe_max_tokens``
tokens (chat) or embedding a few texts; every other task the miner offers (an installed task the validator
scores) gets a burst of that task's own challenges, drawn by its generator, in the same round. Each answer
becomes an observation of kind ``probe`` carrying the round, the units it delivered (chat: completion tokens,
never more than asked nor than the answer's bytes, the scorer replacing them with its recount when it
verifies the answer; other tasks: the challenge's units) and how long after the burst it ended; a refusal
(429, 503, another status), a timeout or a broken connection is a failure inside the advertised capacity.
:mod:`veilnet.scoring` turns a round into units per second per miner. Hotkeys in front of one backend are
probed together, so they split that backend's throughput: splitting a miner into hotkeys earns nothing while
the backend shares itself among them (docs/scoring.md says what an operator serving them in turn gains).

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
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import aiohttp
from bittensor_wallet import Keypair
from pydantic import ValidationError
from redis.exceptions import RedisError

from veilnet.chain import errors as ce
from veilnet.chain.interface import Chain
from veilnet.chain.types import NeuronInfo
from veilnet.errors import StoreError, VeilnetError
from veilnet.logs import log_event
from veilnet.protocol import paths
from veilnet.protocol.capacity import CapacityDocument, ModelOffer
from veilnet.protocol.epistula import verify_response
from veilnet.protocol.openai import ChatCompletionRequest, EmbeddingRequest
from veilnet.quotas import quota_for, validator_stakes
from veilnet.relay import MinerClient, MinerDeadlines, RelayClient, RelayError
from veilnet.scoring import Observation, Outcome
from veilnet.settings import ValidatorSettings
from veilnet.store.organic import RequestCounter
from veilnet.store.validator_pipeline import ChallengeRecord, ValidatorPipeline
from veilnet.tasks.challenges import PromptPool, challenge_request, embeddings_texts
from veilnet.tasks.interface import Challenge, ChallengeTools
from veilnet.tasks.registry import installed_tasks, task_named
from veilnet.validator.asking import draw_challenge, send_challenge

__all__ = [
    "ProbeContext",
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
    prompt_pool: PromptPool | None
    reference: Any  # the validator's engine, for tasks whose challenges a model writes


@dataclass(frozen=True)
class ProbeTarget:
    """``requests`` concurrent requests of ``task`` for ``model`` to ``neuron`` in one round (a request larger
    than ``max_body_bytes``, which the miner would refuse, is not sent)."""

    neuron: NeuronInfo
    task: str  # chat, embeddings or another installed task
    model: str
    requests: int
    max_body_bytes: int | None = None


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
                tasks: frozenset[str] = frozenset()) -> list[ProbeTarget]:
    """Who gets how many requests in a round: per miner one reference model it offers (chosen at random), as
    many requests as it advertises running at once, at most ``probe_concurrency`` and this validator's
    synthetic share of its quota for the window; embeddings too where the miner embeds with that model and
    embeddings have a share; and per offer of one of ``tasks`` (with a share), that task's challenges by the
    same rule."""
    shares = settings.task_shares if task_shares is None else task_shares

    def target(neuron: NeuronInfo, task: str, offer: ModelOffer, max_body: int | None = None) -> ProbeTarget | None:
        quota = quota_for(offer.capacity_per_window, stakes, me)
        size = min(offer.concurrency, settings.probe_concurrency, int(quota.total * settings.synthetic_share))
        return ProbeTarget(neuron, task, offer.id, size, max_body) if size >= 1 else None

    targets = []
    for neuron, document in documents:
        offers = [o for o in document.models if o.id in settings.reference_models and o.task == "chat"]
        offer = rng.choice(offers) if offers else None
        if offer is not None:
            targets.append(target(neuron, "chat", offer))
            if offer.embeddings and shares.get("embeddings", 0.0) > 0 and settings.embedding_share > 0:
                targets.append(target(neuron, "embeddings", offer))
        targets += [target(neuron, o.task, o, document.max_body_bytes) for o in document.models
                    if o.task in tasks and shares.get(o.task, 1.0) > 0]
    return [t for t in targets if t is not None]


def _request(target: ProbeTarget, rng: random.Random, max_tokens: int,
             pool: PromptPool | None) -> ChatCompletionRequest | EmbeddingRequest:
    if target.task == "embeddings":
        return EmbeddingRequest(model=target.model, input=embeddings_texts(rng))
    fields = challenge_request(target.model, rng, pool=pool).model_dump(mode="json", exclude_unset=True)
    fields.pop("stream_options", None)
    fields.pop("max_completion_tokens", None)
    # whole answers of the length the validator chooses (an answer may still stop earlier where it ends)
    return ChatCompletionRequest.model_validate({**fields, "stream": False, "max_tokens": max_tokens})


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
    """A round's id and its clock (perf_counter when its burst was sent)."""

    id: str
    start: float

    def observed(self, observation: Observation) -> Observation:
        """``observation`` as one of this round's: kind probe, elapsed from the burst."""
        return replace(observation, kind="probe", probe=self.id,
                       elapsed_ms=(time.perf_counter() - self.start) * 1000)


async def _probe_one(miners: MinerClient, target: ProbeTarget, request: ChatCompletionRequest | EmbeddingRequest,
                     round_: _Round) -> ChallengeRecord:
    """One chat or embeddings request of the burst."""
    assert target.neuron.axon is not None
    hotkey = target.neuron.hotkey
    max_tokens = request.max_tokens if isinstance(request, ChatCompletionRequest) else None

    def seen(outcome: Outcome) -> Observation:
        return round_.observed(Observation(miner=hotkey, model=target.model, task=target.task, outcome=outcome,
                                           max_tokens=max_tokens))

    try:
        uuid, response = await miners.exchange(target.neuron.axon.url, hotkey, request)
        try:
            if response.status != 200:
                return ChallengeRecord(seen("rate_limited" if response.status == 429 else "error"))
            content = await response.read()
        finally:
            response.release()
    except TimeoutError:
        return ChallengeRecord(seen("timeout"))
    except RelayError:
        return ChallengeRecord(seen("error"))
    observation = seen("ok")
    try:
        verify_response(response.headers, content, request_uuid=uuid, caller=miners.keypair.ss58_address,
                        expected_signer=hotkey)
        answer = json.loads(content)
        if not isinstance(answer, dict):
            raise TypeError("the answer is not a JSON object")
        claimed, units = _delivered(request, answer)
    except (VeilnetError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        # an unsigned, mis-signed or malformed answer is a failed verification, not a network error
        return ChallengeRecord(replace(observation, verified=False, quality=0.0))
    observation = replace(observation, completion_tokens=claimed, units=units)
    return ChallengeRecord(observation, request.model_dump(mode="json", exclude_unset=True), answer)


async def _probe_task(miners: MinerClient, target: ProbeTarget, challenge: Challenge[Any],
                      round_: _Round) -> ChallengeRecord:
    """One challenge of another task in the burst, sent as the challenger sends it, recorded as a probe."""
    kind = task_named(target.task)
    record = await send_challenge(miners, target.neuron, challenge.request, task=target.task, path=kind.miner_path,
                                  units=kind.units(challenge.request), truth=challenge.truth)
    return replace(record, observation=round_.observed(record.observation))


Draw = Callable[[ProbeTarget], Awaitable["Challenge[Any] | None"]]


async def _drawn(targets: Sequence[ProbeTarget], task: str, draw: Draw) -> list[tuple[ProbeTarget, Challenge[Any]]]:
    """``task``'s challenges for its targets' bursts, those the miner would refuse as too large left out."""
    out = []
    for target in (t for t in targets if t.task == task):
        for _ in range(target.requests):
            challenge = await draw(target)
            if challenge is None:
                continue
            size = len(challenge.request.model_dump_json(exclude_unset=True).encode())
            if target.max_body_bytes is None or size <= target.max_body_bytes:
                out.append((target, challenge))
    return out


async def probe_round(miners: MinerClient, targets: Sequence[ProbeTarget], rng: random.Random, *,
                      max_tokens: int, pool: PromptPool | None = None, round_id: str | None = None,
                      draw: Draw | None = None) -> list[ChallengeRecord]:
    """One round: per task, every target's requests built first (other tasks' challenges drawn by ``draw``),
    then all sent at the same moment, in random order across targets."""
    round_id = round_id or f"{int(time.time() * 1000)}-{rng.randrange(1 << 32):08x}"
    records: list[ChallengeRecord] = []
    for task in ("chat", "embeddings"):
        batch = [(t, _request(t, rng, max_tokens, pool)) for t in targets if t.task == task
                 for _ in range(t.requests)]
        rng.shuffle(batch)  # hotkeys' requests interleaved: a backend serving in arrival order favours none
        if batch:
            round_ = _Round(round_id, time.perf_counter())
            records += await asyncio.gather(*(_probe_one(miners, t, r, round_) for t, r in batch))
    for task in sorted({t.task for t in targets} - {"chat", "embeddings"}):
        drawn = await _drawn(targets, task, draw) if draw is not None else []
        rng.shuffle(drawn)
        round_ = _Round(round_id, time.perf_counter())
        records += await asyncio.gather(*(_probe_task(miners, t, c, round_) for t, c in drawn))
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


async def probe_once(ctx: ProbeContext, miners: MinerClient, *, task_shares: dict[str, float] | None = None,
                     ) -> list[ChallengeRecord]:
    """Read every served miner's terms (recorded as observations), probe them all in one round and put the
    answers on the scorers' stream. Returns the round's records."""
    me = ctx.keypair.ss58_address
    metagraph = await ctx.chain.get_metagraph(ctx.netuid)
    neurons = [n for n in metagraph.neurons if n.hotkey != me and n.axon is not None and n.axon.is_served]
    documents = await asyncio.gather(*(_terms(ctx.http, n) for n in neurons))
    for neuron, document in zip(neurons, documents, strict=True):
        for observation in terms_observations(neuron.hotkey, document, ctx.settings.reference_models):
            await ctx.pipeline.add_observation(observation)
    readable = [(n, d) for n, d in zip(neurons, documents, strict=True) if d is not None]
    targets = plan_probes(readable, validator_stakes(metagraph.neurons), me, ctx.settings, ctx.rng,
                          task_shares=task_shares, tasks=probed_tasks(ctx.settings))

    async def draw(target: ProbeTarget) -> Challenge[Any] | None:
        tools = ChallengeTools(rng=ctx.rng, model=target.model, engine=ctx.reference)
        return await draw_challenge(target.task, tools)

    records = await probe_round(miners, targets, ctx.rng, max_tokens=ctx.settings.probe_max_tokens,
                                pool=ctx.prompt_pool, draw=draw)
    for record in records:
        await ctx.pipeline.add_answer(record)
    log_event(log, "probe round", miners=len(readable), requests=len(records),
              failures=sum(1 for r in records if r.observation.outcome != "ok"))
    return records


RETRY_SECONDS = 15.0

# a dependency's failure: the round is skipped and the next one comes at its time
_SKIPPED: tuple[type[BaseException], ...] = (ce.ChainUnavailable, StoreError, RedisError, OSError)


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
        while True:
            records: list[ChallengeRecord] = []
            try:
                records = await probe_once(ctx, miners, task_shares=task_shares)
            except _SKIPPED as exc:
                log_event(log, "probe round skipped", logging.WARNING, error=f"{type(exc).__name__}: {exc}")
            # a round that probed no one (no permit, hence no quota yet; no miner reachable) comes again soon
            interval = ctx.settings.probe_interval if records else min(ctx.settings.probe_interval, RETRY_SECONDS)
            await asyncio.sleep(interval * ctx.rng.uniform(0.5, 1.5))
