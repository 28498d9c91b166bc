"""The validator's three roles as plain async functions over a :class:`ValidatorContext`, talking through
Redis (:mod:`veilnet.store.validator_pipeline`), so one process runs them all or each runs (and scales) apart:

- challenger: keeps the metagraph fresh and sends each served miner signed synthetic requests, spread evenly
  over each quota window and within this validator's quota there (the miner's own quota function), after
  the organic traffic the gateway sent it; checks TEE attestation; stores each answer.
- scorer: verifies a random share of the answers against the reference model and stores observations.
- weights: at each epoch folds the tempo's observations into the score states (:mod:`veilnet.scoring`),
  saves them in Redis, converts them to u16 weights and sets (or commits) them on chain.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from bittensor_wallet import Keypair
from pydantic import ValidationError
from redis.exceptions import RedisError

from veilnet.chain import errors as ce
from veilnet.chain.interface import Chain
from veilnet.chain.types import Metagraph, NeuronInfo
from veilnet.chain.weights import commit_hash, scores_to_u16_weights
from veilnet.confidential.challenge import fetch_evidence
from veilnet.confidential.errors import AttestationFailed
from veilnet.confidential.sessions import AttestedSessions
from veilnet.errors import StoreError, VeilnetError
from veilnet.logs import log_event
from veilnet.models.engine import ModelEngine
from veilnet.protocol import paths
from veilnet.protocol.capacity import CapacityDocument
from veilnet.protocol.epistula import sign_request, verify_response
from veilnet.protocol.headers import TRAFFIC_HEADER
from veilnet.quotas import quota_for, synthetic_budget, validator_stakes
from veilnet.relay import MinerClient
from veilnet.scoring import (
    Observation,
    Outcome,
    ScoreParams,
    ScoreState,
    observe_verdict,
    update_scores,
    weights_from_scores,
)
from veilnet.settings import ValidatorSettings
from veilnet.store.history import ScoreHistory
from veilnet.store.organic import OrganicStream, RequestCounter
from veilnet.store.scores import ScoreStore
from veilnet.store.validator_pipeline import ChallengeRecord, ValidatorPipeline
from veilnet.tasks.challenges import PromptPool
from veilnet.tasks.interface import ChallengeTools, VerifyTools
from veilnet.tasks.registry import installed_tasks, task_named
from veilnet.validator.audit import signed_answer_document
from veilnet.validator.probe import run_prober

__all__ = [
    "ROLES",
    "MinerTerms",
    "PendingReveal",
    "ValidatorContext",
    "ask_miner",
    "attest_miner",
    "keep_running",
    "reveal_due",
    "run_challenger",
    "run_scorer",
    "run_validator",
    "run_weights",
    "score_answer",
    "set_weights_for",
]

ROLES = ("challenger", "scorer", "weights")

log = logging.getLogger(__name__)



@dataclass
class ValidatorContext:
    keypair: Keypair
    chain: Chain
    netuid: int
    reference: ModelEngine | None  # the scorer's; None in processes that run no scorer
    http: aiohttp.ClientSession
    scores: ScoreStore
    settings: ValidatorSettings
    pipeline: ValidatorPipeline
    params: ScoreParams = field(default_factory=ScoreParams)
    rng: random.Random = field(default_factory=random.Random)
    request_timeout: float = 60.0
    organic: OrganicStream | None = None
    replay_share: float = 0.3
    pending_reveals: list[PendingReveal] = field(default_factory=list)
    history: ScoreHistory | None = None
    attestations: AttestedSessions | None = None  # verifies miners' TEE evidence (None: not checked)
    organic_counts: RequestCounter | None = None  # the gateway's requests to each miner (None: no gateway)
    synthetic_counts: RequestCounter | None = None  # this validator's challenges (None: counted in process)
    prompt_pool: PromptPool | None = None  # questions the reference model wrote (None: word-list prompts only)
    # how probe rounds are sent: the gateway's MinerClient class (None: the prober opens its own)
    miners: MinerClient | None = None


@dataclass(frozen=True)
class MinerTerms:
    """What a miner's ``/capacity`` says about the quota it grants and the models it serves."""

    capacity: int
    window_seconds: int
    synthetic_share: float
    models: tuple[str, ...]  # its chat models
    embedding_models: frozenset[str] = frozenset()  # those of ``models`` it also embeds with
    tasks: tuple[tuple[str, str], ...] = ()  # (model, task) it offers for its other tasks
    max_body_bytes: int | None = None  # the largest request it takes (a larger challenge is not sent)


@dataclass(frozen=True)
class PendingReveal:
    uids: list[int]
    weights: list[int]
    salt: list[int]
    version_key: int


def _is_miner(neuron: NeuronInfo, me: str) -> bool:
    return neuron.hotkey != me and neuron.axon is not None and neuron.axon.is_served


async def ask_miner(
    ctx: ValidatorContext, neuron: NeuronInfo, model: str, samples: list[dict[str, str]] | None = None,
    *, task: str = "chat", max_body_bytes: int | None = None,
) -> ChallengeRecord | None:
    """One signed synthetic request to ``neuron``, the challenge ``task`` generates (its interface,
    :mod:`veilnet.tasks.interface`): for ``chat`` a fresh prompt or a replayed organic one, for ``embeddings``
    random texts, for other tasks whatever they draw. The answer, when there is one to verify, travels with the
    observation (and what the challenge knows) to a scorer. The observation carries the answer's time and the
    units it delivered (chat: completion tokens, at most the length asked for; other tasks: the request's
    units): speed is compared among each task's miners. A challenge the validator cannot draw (its engine
    lacks a model the task writes with) is logged and not sent."""
    assert neuron.axon is not None
    kind = task_named(task)
    tools = ChallengeTools(rng=ctx.rng, model=model, engine=ctx.reference, organic=samples or [],
                           prompt_pool=ctx.prompt_pool, replay_share=ctx.replay_share)
    try:
        challenge = await kind.challenge(tools)
    except Exception as exc:  # a task's generator (a plugin's) failing must not stop the challenger
        reason = exc.message if isinstance(exc, VeilnetError) else f"{type(exc).__name__}: {exc}"
        log_event(log, "cannot draw a challenge", logging.ERROR, task=task, model=model, reason=reason)
        return None
    request: dict[str, Any] = challenge.request.model_dump(mode="json", exclude_unset=True)

    def seen(outcome: Outcome, **details: Any) -> Observation:
        return Observation(miner=neuron.hotkey, model=model, task=task, outcome=outcome, **details)

    body = json.dumps(request).encode()
    if max_body_bytes is not None and len(body) > max_body_bytes:
        # an honest miner refuses it (413): the validator's oversight, never counted against the miner
        log_event(log, "challenge larger than the miner takes; not sent", logging.WARNING, task=task,
                  miner=neuron.hotkey, limit=max_body_bytes)
        return None
    headers = sign_request(ctx.keypair, body, neuron.hotkey)
    headers.update({"Content-Type": "application/json", TRAFFIC_HEADER: "synthetic"})
    start = time.perf_counter()
    if ctx.synthetic_counts is not None:
        ctx.synthetic_counts.count(neuron.hotkey)
    try:
        async with ctx.http.post(
            f"{neuron.axon.url}{kind.miner_path}", data=body, headers=headers,
            timeout=aiohttp.ClientTimeout(total=ctx.request_timeout),
        ) as response:
            content = await response.read()
            status = response.status
            response_headers = dict(response.headers)
    except TimeoutError:
        return ChallengeRecord(seen("timeout"))
    except aiohttp.ClientError:
        return ChallengeRecord(seen("error"))
    elapsed = time.perf_counter() - start
    if status == 429:
        return ChallengeRecord(seen("rate_limited"))
    if status != 200:
        return ChallengeRecord(seen("error"))
    try:
        verify_response(response_headers, content, request_uuid=headers["Epistula-Uuid"],
                        caller=ctx.keypair.ss58_address, expected_signer=neuron.hotkey)
        answer = json.loads(content)
        if not isinstance(answer, dict):
            raise TypeError("the answer is not a JSON object")
        completion_tokens = int(answer["usage"]["completion_tokens"]) if task == "chat" else 0
    except (VeilnetError, ValueError, KeyError, TypeError):
        # an unsigned, mis-signed or malformed answer is a failed verification, not a network error
        return ChallengeRecord(seen("ok", verified=False, quality=0.0))
    if task != "chat":  # the units the task's request asked for (embeddings: the inputs embedded)
        return ChallengeRecord(seen("ok", elapsed_ms=elapsed * 1000, units=kind.units(challenge.request)),
                               request, answer, challenge.truth)
    # a whole (not streamed) answer: no time to first token; it delivered at most what was asked for
    max_tokens = request.get("max_tokens") or request.get("max_completion_tokens")
    units = min(completion_tokens, max_tokens) if isinstance(max_tokens, int) else completion_tokens
    observation = seen("ok", elapsed_ms=elapsed * 1000, completion_tokens=completion_tokens,
                       max_tokens=max_tokens if isinstance(max_tokens, int) else None, units=max(0, units))
    return ChallengeRecord(observation, request, answer)


async def score_answer(ctx: ValidatorContext, record: ChallengeRecord) -> Observation:
    """The challenge's observation, its answer verified against the reference model with probability
    ``verify_rate`` (an answer not drawn stays unverified: it counts as missing, never as zero). An organic
    answer the gateway drew (``record.signed``) is always verified, read from the bytes the miner signed."""
    observation = record.observation
    answer: object = record.answer
    if record.signed is not None:  # an organic answer the gateway drew: always verified, from what the miner signed
        answer = signed_answer_document(record.signed, observation.miner)
        if isinstance(answer, str):
            log_event(log, "organic answer not attributable; not verified", logging.WARNING,
                      miner=observation.miner, reason=answer)
            return observation
    elif ctx.rng.random() >= ctx.settings.verify_rate:
        return observation
    if record.request is None or answer is None:
        return observation
    try:
        kind = task_named(observation.task)
        verdict = await kind.verify_json(record.request, record.truth, answer,
                                         VerifyTools(rng=ctx.rng, reference=ctx.reference))
    except Exception as exc:  # the reference's own failure, a scorer set up without one, a task plugin's bug
        reason = exc.message if isinstance(exc, VeilnetError) else f"{type(exc).__name__}: {exc}"
        log_event(log, "cannot verify; the answer stays unverified", logging.ERROR, miner=observation.miner,
                  task=observation.task, reason=reason)
        return observation
    if not verdict.ok:
        log_event(log, "verification failed", logging.WARNING, miner=observation.miner, kind=observation.kind,
                  reason=verdict.reason)
    return observe_verdict(observation, verdict)


async def set_weights_for(
    ctx: ValidatorContext, metagraph: Metagraph, states: dict[str, ScoreState], tempo: int
) -> tuple[list[int], list[int]]:
    """Convert the states to u16 weights by uid and set them, committing them when the subnet has
    commit-reveal on: timelocked (the chain reveals) or hash-committed (revealed later by :func:`reveal_due`)."""
    weights = weights_from_scores(states, tempo, ctx.params)
    by_uid = {n.uid: weights.get(n.hotkey, 0.0) for n in metagraph.neurons if n.hotkey in weights}
    uids, values = scores_to_u16_weights(by_uid)
    if not uids:
        return [], []
    hyper = await ctx.chain.get_hyperparameters(ctx.netuid)
    mode = ctx.settings.commit_reveal
    timelocked = mode == "timelocked" or (mode == "auto" and ctx.chain.timelocked_commits)
    if hyper.commit_reveal_weights_enabled and timelocked:
        reveal_round = await ctx.chain.commit_timelocked_weights(
            ctx.netuid, ctx.keypair, uids, values, hyper.weights_version
        )
        log_event(log, "weights committed (timelocked)", uids=uids, weights=values, reveal_round=reveal_round)
    elif hyper.commit_reveal_weights_enabled:
        salt = [ctx.rng.randrange(65_536) for _ in range(8)]
        digest = commit_hash(bytes(ctx.keypair.public_key or b""), ctx.netuid, uids, values, salt, hyper.weights_version)
        await ctx.chain.commit_weights(ctx.netuid, ctx.keypair, digest)
        ctx.pending_reveals.append(PendingReveal(uids, values, salt, hyper.weights_version))
        log_event(log, "weights committed", uids=uids, weights=values, commit=digest.hex())
    else:
        await ctx.chain.set_weights(ctx.netuid, ctx.keypair, uids, values, hyper.weights_version)
        log_event(log, "weights set", uids=uids, weights=values)
    return uids, values


async def reveal_due(ctx: ValidatorContext) -> int:
    """Reveal every pending commit whose reveal epoch has come; drop expired ones. Returns how many revealed."""
    revealed = 0
    for pending in list(ctx.pending_reveals):
        try:
            await ctx.chain.reveal_weights(ctx.netuid, ctx.keypair, pending.uids, pending.weights, pending.salt,
                                           pending.version_key)
        except (ce.RevealTooEarly, ce.SettingWeightsTooFast):
            continue  # its reveal window has not opened, or weights went in this block: next round
        except (ce.ExpiredWeightCommit, ce.NoWeightsCommitFound, ce.InvalidRevealCommitHashNotMatch) as exc:
            log_event(log, "commit dropped", logging.WARNING, reason=exc.code)
        else:
            revealed += 1
            log_event(log, "weights revealed", uids=pending.uids, weights=pending.weights)
        ctx.pending_reveals.remove(pending)
    return revealed


async def attest_miner(ctx: ValidatorContext, neuron: NeuronInfo) -> Observation | None:
    """Challenge the miner's enclave with a fresh nonce and verify the evidence under this validator's policy;
    None when the miner offers no confidential serving. A verified attestation is reused until it expires."""
    if ctx.attestations is None or neuron.axon is None:
        return None
    if ctx.attestations.get(neuron.hotkey) is not None:  # still fresh: no request to the miner this round
        return Observation(miner=neuron.hotkey, model="", task="attestation", outcome="ok", attested=True)
    url = neuron.axon.url
    capacity = await _capacity(ctx, url)
    if capacity is None or capacity.confidential is None:
        return None  # the chat challenge records the miner's reachability
    try:
        await ctx.attestations.ensure(neuron.hotkey,
                                      lambda nonce: fetch_evidence(ctx.http, ctx.keypair, url, neuron.hotkey, nonce))
    except AttestationFailed as exc:
        log_event(log, "attestation failed", logging.WARNING, miner=neuron.hotkey, code=exc.code, reason=exc.message)
        return Observation(miner=neuron.hotkey, model="", task="attestation", outcome="error", attested=False)
    return Observation(miner=neuron.hotkey, model="", task="attestation", outcome="ok", attested=True)


async def miner_terms(ctx: ValidatorContext, neuron: NeuronInfo) -> MinerTerms | None:
    """The miner's ``/capacity`` (None when it does not answer or answers nonsense)."""
    assert neuron.axon is not None
    document = await _capacity(ctx, neuron.axon.url)
    if document is None:
        return None
    chat = [m for m in document.models if m.task == "chat"]
    installed = installed_tasks()
    wanted = ctx.settings.tasks
    tasks = tuple((m.id, m.task) for m in document.models
                  if m.task in installed and not installed[m.task].language_model
                  and (wanted is None or m.task in wanted))
    return MinerTerms(capacity=min((m.capacity_per_window for m in document.models), default=0),
                      window_seconds=document.window_seconds, synthetic_share=document.synthetic_share,
                      models=tuple(m.id for m in chat), embedding_models=frozenset(m.id for m in chat if m.embeddings),
                      tasks=tasks, max_body_bytes=document.max_body_bytes)


async def _capacity(ctx: ValidatorContext, url: str) -> CapacityDocument | None:
    """The miner's capacity document (None when it does not answer or answers nonsense)."""
    try:
        async with ctx.http.get(f"{url}{paths.CAPACITY}", timeout=aiohttp.ClientTimeout(total=10)) as response:
            return CapacityDocument.model_validate_json(await response.read())
    except (aiohttp.ClientError, TimeoutError, ValidationError):
        return None


async def run_challenger(ctx: ValidatorContext, *, round_interval: float = 1.0) -> None:
    """Challenge every served miner until cancelled, with probe rounds beside the challenges
    (:func:`veilnet.validator.probe.run_prober`: measured throughput, the miners' terms and prices)."""
    loop = asyncio.get_running_loop()
    tasks = {loop.create_task(run_prober(ctx, ctx.miners, task_shares=dict(ctx.params.task_shares))),
             loop.create_task(_challenge(ctx, round_interval=round_interval))}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()  # the failure that ended one of them ends both


async def _challenge(ctx: ValidatorContext, *, round_interval: float) -> None:
    """Challenge every served miner until cancelled: each gets this validator's synthetic budget for the
    window (quota left after organic traffic, at most ``challenges_per_window``), spread evenly over what is
    left of the window at random spacing, one request per challenge for one of the models it serves that the
    scorer can verify. A miner whose terms are unknown is challenged once a round (to record it failing)."""
    terms: dict[str, MinerTerms] = {}
    asked: dict[str, float] = {}  # miner -> when its terms were last asked for (monotonic)
    sent: dict[tuple[str, int], int] = {}  # (miner, window start ms) -> challenges sent, this process
    due: dict[str, float] = {}
    me = ctx.keypair.ss58_address
    while True:
        metagraph = await ctx.chain.get_metagraph(ctx.netuid)
        miners = [n for n in metagraph.neurons if _is_miner(n, me)]
        stakes = validator_stakes(metagraph.neurons)
        samples = await ctx.organic.read(100) if ctx.organic is not None else []
        # terms are asked for again every minute (a miner that did not answer: after 10 s), all at once
        clock = time.monotonic()
        to_ask = [n for n in miners
                  if clock - asked.get(n.hotkey, -math.inf) > (60.0 if n.hotkey in terms else 10.0)]
        for neuron, fetched in zip(to_ask, await asyncio.gather(*(miner_terms(ctx, n) for n in to_ask)),
                                   strict=True):
            asked[neuron.hotkey] = clock
            if fetched is not None:
                terms[neuron.hotkey] = fetched
        now = time.time()
        ready: list[tuple[NeuronInfo, str, str]] = []  # (miner, model, task)
        for neuron in miners:
            known = terms.get(neuron.hotkey)
            if due.get(neuron.hotkey, 0.0) > now:
                continue
            models = [m for m in ctx.settings.reference_models if known is None or m in known.models]
            if known is None or not (models or known.tasks):
                if not ctx.settings.reference_models:  # no chat to ask it for: its terms are asked for again
                    continue
                ready.append((neuron, ctx.rng.choice(ctx.settings.reference_models), "chat"))
                due[neuron.hotkey] = now + round_interval
                continue
            window_ms = known.window_seconds * 1000
            now_ms = int(now * 1000)
            start_ms = now_ms - now_ms % window_ms
            organic = await ctx.organic_counts.used(neuron.hotkey, start_ms) if ctx.organic_counts else 0
            used = (await ctx.synthetic_counts.used(neuron.hotkey, start_ms) if ctx.synthetic_counts
                    else sent.get((neuron.hotkey, start_ms), 0))
            quota = quota_for(known.capacity, stakes, me, known.synthetic_share)
            budget = synthetic_budget(quota, organic, used, cap=ctx.settings.challenges_per_window)
            left_s = (start_ms + window_ms - now_ms) / 1000
            if budget == 0:
                due[neuron.hotkey] = now + left_s  # the next window
                continue
            due[neuron.hotkey] = now + left_s / budget * ctx.rng.uniform(0.5, 1.5)
            sent[(neuron.hotkey, start_ms)] = used + 1
            model, task = ctx.rng.choice([*((m, "chat") for m in models), *known.tasks])
            embeds = model in known.embedding_models and ctx.rng.random() < ctx.settings.embedding_share
            ready.append((neuron, model, "embeddings" if embeds and task == "chat" else task))
        for stale in [k for k in sent if k[1] < int(now * 1000) - 3_600_000]:
            del sent[stale]
        records = await asyncio.gather(*(
            ask_miner(ctx, n, m, samples, task=t, max_body_bytes=known_terms.max_body_bytes if known_terms else None)
            for n, m, t in ready for known_terms in [terms.get(n.hotkey)]))
        for record in records:
            if record is not None:
                await ctx.pipeline.add_answer(record)
        attested = await asyncio.gather(*(attest_miner(ctx, n) for n in miners))
        for observation in attested:
            if observation is not None:
                await ctx.pipeline.add_observation(observation)
        await asyncio.sleep(round_interval)


async def run_scorer(ctx: ValidatorContext) -> None:
    """Verify and record answers until cancelled (several scorers share the work)."""
    while True:
        for entry_id, record in await ctx.pipeline.claim_answers():
            await ctx.pipeline.record(entry_id, await score_answer(ctx, record), forget_answer=record.private)


async def run_weights(ctx: ValidatorContext, *, round_interval: float = 1.0) -> None:
    """At each epoch fold the tempo's observations into the scores and set weights, until cancelled."""
    states, tempo = await ctx.scores.load()
    epoch_at = await ctx.chain.get_next_epoch_block(ctx.netuid)
    pending_weights = False
    while True:
        block = await ctx.chain.get_current_block()
        if block >= epoch_at:
            observations, ids = await ctx.pipeline.take_observations()
            tempo += 1
            states = update_scores(states, observations, tempo, ctx.params)
            await ctx.scores.save(states, tempo)
            await ctx.pipeline.forget(ids)
            if ctx.history is not None:
                try:
                    graph: Metagraph | None = await ctx.chain.get_metagraph(ctx.netuid)
                except ce.ChainUnavailable:
                    graph = None  # the row keeps the scores; this epoch's incentive and emission stay unknown
                try:
                    await ctx.history.record(tempo, block, states, graph)
                except StoreError as exc:  # a record for the dashboard: the epoch and its weights go on
                    log_event(log, "score history not written", logging.WARNING, tempo=tempo, reason=exc.message)
            epoch_at = await ctx.chain.get_next_epoch_block(ctx.netuid)
            pending_weights = True
        if ctx.pending_reveals:
            await reveal_due(ctx)
        if pending_weights:
            try:
                await set_weights_for(ctx, await ctx.chain.get_metagraph(ctx.netuid), states, tempo)
                pending_weights = False
            except (ce.SettingWeightsTooFast, ce.NoValidatorPermit) as exc:
                log_event(log, "weights deferred", reason=exc.code)
            except ce.ChainUnavailable as exc:
                log_event(log, "chain unavailable; weights retried next round", logging.WARNING, reason=exc.message)
        await asyncio.sleep(round_interval)


# a dependency's failure, not the validator's: the chain unreachable, Redis or the database away or timing out
DEPENDENCY_FAILURES: tuple[type[BaseException], ...] = (ce.ChainUnavailable, StoreError, RedisError, OSError)


async def keep_running(role: str, run: Callable[[], Awaitable[None]], *, first_pause: float = 0.5,
                       max_pause: float = 30.0) -> None:
    """Run a role's loop until cancelled, through its dependencies' outages: when one fails
    (``DEPENDENCY_FAILURES``), log it and start the loop again after a pause that doubles from ``first_pause``
    to ``max_pause`` (and starts over once a run lasted longer than ``max_pause``). The loop starts from what
    Redis and the chain hold, as a restarted process would."""
    pause = first_pause
    while True:
        started = time.monotonic()
        try:
            await run()
            return
        except DEPENDENCY_FAILURES as exc:
            if time.monotonic() - started > max_pause:
                pause = first_pause
            log_event(log, "dependency failed; the role starts again", logging.WARNING, role=role,
                      error=f"{type(exc).__name__}: {exc}", retry_in_s=pause)
            await asyncio.sleep(pause)
            pause = min(max_pause, pause * 2)


async def run_validator(ctx: ValidatorContext, *, roles: Collection[str] = ROLES, round_interval: float = 1.0) -> None:
    """Run the given roles (all three by default) side by side until cancelled, each through its
    dependencies' outages (:func:`keep_running`)."""
    unknown = set(roles) - set(ROLES)
    if unknown or not roles:
        raise ValueError(f"roles must be among {', '.join(ROLES)}; got {', '.join(sorted(roles)) or 'none'}")
    loops = {"challenger": lambda: run_challenger(ctx, round_interval=round_interval),
             "scorer": lambda: run_scorer(ctx),
             "weights": lambda: run_weights(ctx, round_interval=round_interval)}
    async with asyncio.TaskGroup() as group:
        for role in ROLES:
            if role in roles:
                group.create_task(keep_running(role, loops[role]), name=f"validator-{role}")
