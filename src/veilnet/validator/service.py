"""The validator's three roles as plain async functions over a :class:`ValidatorContext`, talking through
Redis (:mod:`veilnet.store.validator_pipeline`), so one process runs them all or each runs (and scales) apart:

- challenger: keeps the metagraph fresh and sends each served miner challenges a miner cannot tell from
  organic requests (the gateway's MinerClient, organic parameters, Poisson spacing: :mod:`.asking`,
  :mod:`.pacing`) within this validator's share of its quota there, after the organic traffic the gateway
  sent it; checks TEE attestation; stores each answer.
- scorer: verifies a random share of the answers against the reference model and stores observations.
- weights: at each epoch folds the tempo's observations into the score states (:mod:`veilnet.scoring`),
  saves them in Redis, converts them to u16 weights and sets (or commits) them on chain.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from bittensor_wallet import Keypair
from pydantic import ValidationError
from redis.exceptions import RedisError

from veilnet import cancelling
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
from veilnet.quotas import quota_for, synthetic_budget, validator_stakes
from veilnet.relay import MinerClient
from veilnet.scoring import (
    Observation,
    ScoreParams,
    ScoreState,
    observe_verdict,
    open_windows,
    probe_window,
    update_scores,
    weights_from_scores,
)
from veilnet.settings import ValidatorSettings
from veilnet.store.history import ScoreHistory
from veilnet.store.organic import OrganicStream, RequestCounter
from veilnet.store.scores import ScoreStore
from veilnet.store.validator_pipeline import ChallengeRecord, ValidatorPipeline
from veilnet.tasks.challenges import PromptPool
from veilnet.tasks.interface import Challenge, ChallengeTools, TaskEngines, VerifyTools
from veilnet.tasks.registry import installed_tasks, task_named
from veilnet.validator.asking import draw_challenge, send_challenge, terms_failure
from veilnet.validator.audit import signed_answer_document
from veilnet.validator.pacing import (
    DEFAULT_WINDOW_SECONDS,
    SentLedger,
    allowance,
    next_gap,
    unknown_terms_allowance,
    window_start,
)
from veilnet.validator.probe import run_prober

__all__ = [
    "ROLES",
    "HeldWindows",
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
    # how challenges and probe rounds are sent: the gateway's MinerClient class (its signer, headers, HTTP
    # client), counting each request in ``synthetic_counts``; a challenger needs one (a scorer or weights
    # process does not)
    miners: MinerClient | None = None
    replayed: set[str] = field(default_factory=set)  # organic conversations this challenger replayed (once each)
    # the synthetic requests this process's challenger and prober sent each miner per quota window
    ledger: SentLedger = field(default_factory=SentLedger)
    # the scorer's own engines for the tasks whose organic answers it compares with them (Task.organic_engine),
    # opened on first use (:class:`veilnet.validator.engines.OrganicEngines`)
    engines: TaskEngines | None = None


@dataclass(frozen=True)
class MinerTerms:
    """What a miner's ``/capacity`` says about the quota it grants and the models it serves."""

    capacity: int
    window_seconds: int
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


async def challenge_for(ctx: ValidatorContext, model: str, samples: list[dict[str, str]] | None = None, *,
                        task: str = "chat") -> Challenge[Any] | None:
    """A challenge for ``model`` drawn by ``task``'s generator (:mod:`veilnet.tasks.interface`): for ``chat``
    a fresh prompt or a replayed organic one (each conversation once), its parameters those of a recent
    organic request, streamed or not like them; for ``embeddings`` random texts; for other tasks whatever they
    draw. None, logged, when the validator cannot draw it (its engine lacks a model the task writes with)."""
    if len(ctx.replayed) > 100_000:  # bounded; the organic stream has long moved on from the oldest
        ctx.replayed.clear()
    tools = ChallengeTools(rng=ctx.rng, model=model, engine=ctx.reference, organic=samples or [],
                           prompt_pool=ctx.prompt_pool, replay_share=ctx.replay_share, replayed=ctx.replayed)
    return await draw_challenge(task, tools)


async def ask_miner(
    ctx: ValidatorContext, neuron: NeuronInfo, model: str, samples: list[dict[str, str]] | None = None,
    *, task: str = "chat", max_body_bytes: int | None = None,
) -> ChallengeRecord | None:
    """One challenge to ``neuron``, sent through ``ctx.miners`` exactly as the gateway sends organic requests
    (:func:`veilnet.validator.asking.send_challenge`). The answer, when there is one to verify, travels with
    the observation (and what the challenge knows) to a scorer. None when no challenge was sent: none could be
    drawn, or it is larger than the miner takes (an honest miner refuses it: the validator's oversight)."""
    challenge = await challenge_for(ctx, model, samples, task=task)
    if challenge is None:
        return None
    kind = task_named(task)
    body = challenge.request.model_dump_json(exclude_unset=True).encode()
    if max_body_bytes is not None and len(body) > max_body_bytes:
        log_event(log, "challenge larger than the miner takes; not sent", logging.WARNING, task=task,
                  miner=neuron.hotkey, limit=max_body_bytes)
        return None
    if ctx.miners is None:
        raise RuntimeError("this process runs a challenger without a MinerClient (ValidatorContext.miners)")
    return await send_challenge(ctx.miners, neuron, challenge.request, task=task, path=kind.miner_path,
                                units=kind.units(challenge.request), truth=challenge.truth)


async def score_answer(ctx: ValidatorContext, record: ChallengeRecord) -> Observation:
    """The challenge's observation, its answer verified against the reference model with probability
    ``verify_rate`` (an answer not drawn stays unverified: it counts as missing, never as zero). An organic
    answer the gateway drew (``record.signed``) is always verified, read from the bytes the miner signed, by its
    task's :meth:`~veilnet.tasks.interface.Task.verify_organic` (None: the task cannot judge it, and it stays
    unverified)."""
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
    tools = VerifyTools(rng=ctx.rng, reference=ctx.reference, engines=ctx.engines)
    try:
        kind = task_named(observation.task)
        if record.signed is not None:
            verdict = await kind.verify_organic_json(record.request, answer, tools)
        else:
            verdict = await kind.verify_json(record.request, record.truth, answer, tools)
    except Exception as exc:  # the reference's own failure, a scorer set up without one, a task plugin's bug
        reason = exc.message if isinstance(exc, VeilnetError) else f"{type(exc).__name__}: {exc}"
        log_event(log, "cannot verify; the answer stays unverified", logging.ERROR, miner=observation.miner,
                  task=observation.task, reason=reason)
        return observation
    if verdict is None:  # a task with no check without a truth: neither for nor against the miner
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
        except (ce.RevealTooEarly, ce.SettingWeightsTooFast):  # weights set a block ago: next round
            continue
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
                      window_seconds=document.window_seconds,
                      models=tuple(m.id for m in chat), embedding_models=frozenset(m.id for m in chat if m.embeddings),
                      tasks=tasks, max_body_bytes=document.max_body_bytes)


async def _capacity(ctx: ValidatorContext, url: str) -> CapacityDocument | None:
    """The miner's capacity document (None when it does not answer or answers nonsense)."""
    try:
        async with ctx.http.get(f"{url}{paths.CAPACITY}", timeout=aiohttp.ClientTimeout(total=10)) as response:
            return CapacityDocument.model_validate_json(await response.read())
    except (aiohttp.ClientError, TimeoutError, ValidationError):
        return None


@dataclass
class _Plan:
    """The challenger's schedule, kept across rounds (this process)."""

    terms: dict[str, MinerTerms] = field(default_factory=dict)
    asked: dict[str, float] = field(default_factory=dict)  # miner -> when its terms were last asked for (monotonic)
    failed: dict[str, float] = field(default_factory=dict)  # miner -> when a terms failure was last recorded
    due: dict[str, float] = field(default_factory=dict)  # miner -> when its next challenge goes (unix s)


async def _refresh_terms(ctx: ValidatorContext, plan: _Plan, miners: list[NeuronInfo]) -> None:
    """Ask for terms again every minute (a miner that did not answer: after 10 s), all at once; a miner whose
    terms cannot be read or are invalid loses what was read before and gets a reliability failure (at most
    one a minute)."""
    clock = time.monotonic()
    to_ask = [n for n in miners
              if clock - plan.asked.get(n.hotkey, -math.inf) > (60.0 if n.hotkey in plan.terms else 10.0)]
    for neuron, fetched in zip(to_ask, await asyncio.gather(*(miner_terms(ctx, n) for n in to_ask)), strict=True):
        plan.asked[neuron.hotkey] = clock
        if fetched is not None:
            plan.terms[neuron.hotkey] = fetched
            continue
        plan.terms.pop(neuron.hotkey, None)
        if clock - plan.failed.get(neuron.hotkey, -math.inf) >= 60.0:
            plan.failed[neuron.hotkey] = clock
            log_event(log, "miner terms unreadable", logging.WARNING, miner=neuron.hotkey)
            await ctx.pipeline.add_observation(terms_failure(neuron.hotkey))


@dataclass(frozen=True)
class _Window:
    """A miner's challenge window as the challenger sees it now."""

    budget: int  # challenges still to send in it
    start_ms: int
    end: float  # unix s
    rate: float  # challenges per second at most: the window's allowance spread over the whole window
    offers: list[tuple[str, str]]  # (model, task) to challenge it for


async def _window(ctx: ValidatorContext, plan: _Plan, neuron: NeuronInfo, stakes: dict[str, int], now: float,
                  normal: int) -> _Window:
    """``neuron``'s window now. A miner with unknown terms (or none of the reference models) gets ``normal``
    over the default window."""
    known = plan.terms.get(neuron.hotkey)
    offers = [(m, "chat") for m in ctx.settings.reference_models if known is not None and m in known.models]
    offers += known.tasks if known is not None else ()
    window_s = known.window_seconds if known is not None and offers else DEFAULT_WINDOW_SECONDS
    start_ms = window_start(int(now * 1000), window_s)
    counted = await ctx.synthetic_counts.used(neuron.hotkey, start_ms) if ctx.synthetic_counts else 0
    used = max(counted, ctx.ledger.sent(neuron.hotkey, start_ms))  # challenges and probe requests
    # the challenges among them (after a restart Redis knows more than the ledger: counted as challenges)
    challenges = max(ctx.ledger.sent(neuron.hotkey, start_ms, "challenge"),
                     used - ctx.ledger.sent(neuron.hotkey, start_ms, "probe"))
    end = start_ms / 1000 + window_s
    if known is None or not offers:
        return _Window(max(0, normal - used), start_ms, end, normal / window_s,
                       [(m, "chat") for m in ctx.settings.reference_models])
    organic = await ctx.organic_counts.used(neuron.hotkey, start_ms) if ctx.organic_counts else 0
    quota = quota_for(known.capacity, stakes, ctx.keypair.ss58_address)
    share, cap = ctx.settings.synthetic_share, ctx.settings.challenges_per_window
    budget = max(0, min(synthetic_budget(quota, organic, used, synthetic_share=share), cap - challenges))
    limit = allowance(known.capacity, stakes, ctx.keypair.ss58_address, synthetic_share=share, cap=cap)
    return _Window(budget, start_ms, end, limit / window_s, offers)


async def _schedule(ctx: ValidatorContext, plan: _Plan, miners: list[NeuronInfo], stakes: dict[str, int],
                    horizon: float) -> list[tuple[float, NeuronInfo, str, str]]:
    """The challenges due before ``horizon`` (unix s): (when, miner, model, task), each counted as sent."""
    me, settings = ctx.keypair.ss58_address, ctx.settings
    known = [(allowance(t.capacity, stakes, me, synthetic_share=settings.synthetic_share,
                        cap=settings.challenges_per_window), t.window_seconds)
             for t in plan.terms.values() if t.tasks or any(m in t.models for m in settings.reference_models)]
    normal = unknown_terms_allowance(known, settings.challenges_per_window)
    now = time.time()
    out: list[tuple[float, NeuronInfo, str, str]] = []
    for neuron in miners:
        at = plan.due.get(neuron.hotkey)
        if at is not None and at >= horizon:
            continue
        window = await _window(ctx, plan, neuron, stakes, now, normal)
        if not window.offers:  # nothing to ask it for (no chat reference model, its tasks unknown yet)
            continue
        budget, known_terms = window.budget, plan.terms.get(neuron.hotkey)
        at = max(now, at) if at is not None else now + next_gap(ctx.rng, window.end - now, budget, window.rate)
        while budget > 0 and at < min(horizon, window.end):
            model, task = ctx.rng.choice(window.offers)
            embeds = (task == "chat" and known_terms is not None and model in known_terms.embedding_models
                      and ctx.rng.random() < settings.embedding_share)
            out.append((at, neuron, model, "embeddings" if embeds else task))
            ctx.ledger.add(neuron.hotkey, window.start_ms, "challenge")
            budget -= 1
            at += next_gap(ctx.rng, window.end - at, budget, window.rate)
        # spent: the next window's first challenge comes at the same rate as any other
        plan.due[neuron.hotkey] = at if budget > 0 else window.end + next_gap(ctx.rng, 1.0, 1, window.rate)
    ctx.ledger.forget_before(int(now * 1000) - 3_600_000)
    return out


async def run_challenger(ctx: ValidatorContext, *, round_interval: float = 1.0) -> None:
    """Challenge every served miner until cancelled, with probe rounds beside the challenges
    (:func:`veilnet.validator.probe.run_prober`: measured throughput, the miners' terms and prices)."""
    loop = asyncio.get_running_loop()
    tasks = {loop.create_task(run_prober(ctx, ctx.miners, task_shares=dict(ctx.params.task_shares))),
             loop.create_task(_challenge(ctx, round_interval=round_interval))}
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancelling.stop(tasks)  # cancelled again while one goes on: a lost cancellation cannot hang this
    for task in done:
        task.result()  # the failure that ended one of them ends both


async def _challenge(ctx: ValidatorContext, *, round_interval: float) -> None:
    """Challenge every served miner until cancelled: each gets this validator's synthetic budget for the
    window (its share of the quota, after organic traffic, at most ``challenges_per_window``; the normal
    budget when its terms are unknown, :mod:`veilnet.validator.pacing`), each challenge sent at its own
    moment (exponential gaps, not on the round's tick) for one of the (model, task) it offers that the scorer
    can verify."""
    plan = _Plan()
    me = ctx.keypair.ss58_address

    async def fly(at: float, neuron: NeuronInfo, model: str, task: str, samples: list[dict[str, str]]) -> None:
        await asyncio.sleep(max(0.0, at - time.time()))
        known = plan.terms.get(neuron.hotkey)
        record = await ask_miner(ctx, neuron, model, samples, task=task,
                                 max_body_bytes=known.max_body_bytes if known is not None else None)
        if record is not None:
            await ctx.pipeline.add_answer(record)

    flights: set[asyncio.Task[None]] = set()  # challenges waiting for their moment or their answer
    try:
        while True:
            cancelling.raise_if_stopping()
            for done in [f for f in flights if f.done()]:
                flights.discard(done)
                done.result()  # a failure to store an answer (Redis) restarts the role like any other
            metagraph = await ctx.chain.get_metagraph(ctx.netuid)
            miners = [n for n in metagraph.neurons if _is_miner(n, me)]
            stakes = validator_stakes(metagraph.neurons)
            samples = await ctx.organic.read(100) if ctx.organic is not None else []
            await _refresh_terms(ctx, plan, miners)
            for at, neuron, model, task in await _schedule(ctx, plan, miners, stakes, time.time() + round_interval):
                flights.add(asyncio.create_task(fly(at, neuron, model, task, samples)))
            attested = await asyncio.gather(*(attest_miner(ctx, n) for n in miners))
            for observation in attested:
                if observation is not None:
                    await ctx.pipeline.add_observation(observation)
            await asyncio.sleep(round_interval)
    finally:
        await cancelling.stop(flights)


async def run_scorer(ctx: ValidatorContext) -> None:
    """Verify and record answers until cancelled (several scorers share the work)."""
    while True:
        cancelling.raise_if_stopping()
        for entry_id, record in await ctx.pipeline.claim_answers():
            await ctx.pipeline.record(entry_id, await score_answer(ctx, record), forget_answer=record.private)


@dataclass
class HeldWindows:
    """Probe windows an epoch holds back because the scorers have not recorded all their answers yet
    (:func:`veilnet.scoring.open_windows`), so each window's answers are folded into one tempo together;
    each is held at most ``most`` epochs, then what is there is folded (an answer lost for good does not hold
    its window forever)."""

    most: int = 3
    epochs: dict[tuple[str, str], int] = field(default_factory=dict)  # window -> epochs it was held so far

    def split(self, entries: Sequence[tuple[str, Observation | None]]) -> tuple[list[Observation], list[str]]:
        """The observations to fold now and the entry ids to forget once folded (empty entries' too); the
        others stay stored for the next epoch."""
        stored = [o for _, o in entries if o is not None]
        waiting = {w for w in open_windows(stored) if self.epochs.get(w, 0) < self.most}
        self.epochs = {w: self.epochs.get(w, 0) + 1 for w in waiting}
        taken = [(entry_id, o) for entry_id, o in entries if o is None or probe_window(o) not in waiting]
        return [o for _, o in taken if o is not None], [entry_id for entry_id, _ in taken]


async def run_weights(ctx: ValidatorContext, *, round_interval: float = 1.0) -> None:
    """At each epoch fold the tempo's observations into the scores and set weights, until cancelled (a
    probe window whose answers the scorers are still recording waits for the next epoch: :class:`HeldWindows`)."""
    states, tempo = await ctx.scores.load()
    held = HeldWindows()
    epoch_at = await ctx.chain.get_next_epoch_block(ctx.netuid)
    pending_weights = False
    while True:
        cancelling.raise_if_stopping()  # a cancellation one of the awaits below lost ends the loop here
        block = await ctx.chain.get_current_block()
        if block >= epoch_at:
            observations, ids = held.split(await ctx.pipeline.observation_entries())
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
    to ``max_pause`` (and starts over once a run lasted longer than ``max_pause``), unless the role is being
    cancelled. The loop starts from what Redis and the chain hold, as a restarted process would."""
    pause = first_pause
    while True:
        started = time.monotonic()
        try:
            await run()
            return
        except DEPENDENCY_FAILURES as exc:
            if cancelling.stopping():  # the failure came with a cancellation: the role ends
                raise asyncio.CancelledError from exc
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
