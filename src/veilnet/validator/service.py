"""The validator loop as plain async functions over a :class:`ValidatorContext`.

Each round challenges every served miner with a synthetic request (within this validator's quota at that
miner), verifies a random share of the answers against the reference model and records observations.
When the chain passes an epoch boundary the tempo's observations are folded into the score states
(:mod:`veilnet.scoring`), saved in Redis, converted to u16 weights and set on chain.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from bittensor_wallet import Keypair

from veilnet.chain import errors as ce
from veilnet.chain.interface import Chain
from veilnet.chain.types import Metagraph, NeuronInfo
from veilnet.chain.weights import commit_hash, scores_to_u16_weights
from veilnet.confidential.challenge import fetch_evidence
from veilnet.confidential.errors import AttestationFailed
from veilnet.confidential.sessions import AttestedSessions
from veilnet.errors import VeilnetError
from veilnet.logs import log_event
from veilnet.models.engine import ModelEngine
from veilnet.protocol.epistula import sign_request, verify_response
from veilnet.protocol.headers import TRAFFIC_HEADER
from veilnet.scoring import Observation, ScoreParams, ScoreState, update_scores, weights_from_scores
from veilnet.settings import ValidatorSettings
from veilnet.store.history import ScoreHistory
from veilnet.store.organic import OrganicStream
from veilnet.store.scores import ScoreStore
from veilnet.tasks.chat import verify_chat_answer
from veilnet.tasks.prompts import synthetic_chat_request

__all__ = [
    "PendingReveal",
    "ValidatorContext",
    "attest_miner",
    "challenge_miner",
    "replay_request",
    "reveal_due",
    "run_validator",
    "set_weights_for",
]

log = logging.getLogger(__name__)



@dataclass
class ValidatorContext:
    keypair: Keypair
    chain: Chain
    netuid: int
    reference: ModelEngine
    http: aiohttp.ClientSession
    scores: ScoreStore
    settings: ValidatorSettings
    params: ScoreParams = field(default_factory=ScoreParams)
    rng: random.Random = field(default_factory=random.Random)
    request_timeout: float = 60.0
    organic: OrganicStream | None = None
    replay_share: float = 0.3
    pending_reveals: list[PendingReveal] = field(default_factory=list)
    history: ScoreHistory | None = None
    attestations: AttestedSessions | None = None  # verifies miners' TEE evidence (None: not checked)


@dataclass(frozen=True)
class PendingReveal:
    uids: list[int]
    weights: list[int]
    salt: list[int]
    version_key: int


def replay_request(sample: dict[str, str], model: str) -> dict[str, Any] | None:
    """An anonymised organic chat request re-asked as a challenge (logprobs on, bounded length)."""
    try:
        request = json.loads(sample["request"])
    except (KeyError, ValueError):
        return None
    if not isinstance(request, dict) or request.get("model") != model or not isinstance(request.get("messages"), list):
        return None
    request.update({"stream": False, "logprobs": True, "top_logprobs": 1,
                    "max_tokens": min(int(request.get("max_tokens") or 64), 64)})
    request.pop("stream_options", None)
    return request


def _is_miner(neuron: NeuronInfo, me: str) -> bool:
    return neuron.hotkey != me and neuron.axon is not None and neuron.axon.is_served


async def challenge_miner(
    ctx: ValidatorContext, neuron: NeuronInfo, model: str, samples: list[dict[str, str]] | None = None
) -> Observation:
    """One signed synthetic request to ``neuron`` — a fresh prompt, or a replayed organic one — verified with
    probability ``verify_rate``."""
    assert neuron.axon is not None
    request = None
    if samples and ctx.rng.random() < ctx.replay_share:
        request = replay_request(ctx.rng.choice(samples), model)
    if request is None:
        request = synthetic_chat_request(model, ctx.rng)
    body = json.dumps(request).encode()
    headers = sign_request(ctx.keypair, body, neuron.hotkey)
    headers.update({"Content-Type": "application/json", TRAFFIC_HEADER: "synthetic"})
    start = time.perf_counter()
    try:
        async with ctx.http.post(
            f"{neuron.axon.url}/v1/chat/completions", data=body, headers=headers,
            timeout=aiohttp.ClientTimeout(total=ctx.request_timeout),
        ) as response:
            content = await response.read()
            status = response.status
            response_headers = dict(response.headers)
    except TimeoutError:
        return Observation(miner=neuron.hotkey, model=model, task="chat", outcome="timeout")
    except aiohttp.ClientError:
        return Observation(miner=neuron.hotkey, model=model, task="chat", outcome="error")
    elapsed = time.perf_counter() - start
    if status == 429:
        return Observation(miner=neuron.hotkey, model=model, task="chat", outcome="rate_limited")
    if status != 200:
        return Observation(miner=neuron.hotkey, model=model, task="chat", outcome="error")
    try:
        verify_response(response_headers, content, request_uuid=headers["Epistula-Uuid"],
                        caller=ctx.keypair.ss58_address, expected_signer=neuron.hotkey)
        answer = json.loads(content)
        completion_tokens = int(answer["usage"]["completion_tokens"])
    except (VeilnetError, ValueError, KeyError, TypeError):
        # an unsigned, mis-signed or malformed answer is a failed verification, not a network error
        return Observation(miner=neuron.hotkey, model=model, task="chat", outcome="ok", verified=False, quality=0.0)
    verified: bool | None = None
    quality: float | None = None
    if ctx.rng.random() < ctx.settings.verify_rate:
        verdict = await verify_chat_answer(ctx.reference, request, answer, rng=ctx.rng)
        verified, quality = verdict.ok, verdict.quality
        if not verdict.ok:
            log_event(log, "verification failed", logging.WARNING, miner=neuron.hotkey, reason=verdict.reason)
    return Observation(
        miner=neuron.hotkey, model=model, task="chat", outcome="ok", verified=verified, quality=quality,
        ttft_ms=elapsed * 1000, tokens_per_s=completion_tokens / elapsed if elapsed > 0 else None,
        completion_tokens=completion_tokens,
    )


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
        except ce.RevealTooEarly:
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
    try:
        async with ctx.http.get(f"{url}/capacity", timeout=aiohttp.ClientTimeout(total=10)) as response:
            capacity = await response.json(content_type=None)
        if not isinstance(capacity, dict) or not capacity.get("confidential"):
            return None
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None  # the chat challenge records the miner's reachability
    try:
        await ctx.attestations.ensure(neuron.hotkey,
                                      lambda nonce: fetch_evidence(ctx.http, ctx.keypair, url, neuron.hotkey, nonce))
    except AttestationFailed as exc:
        log_event(log, "attestation failed", logging.WARNING, miner=neuron.hotkey, reason=exc.message)
        return Observation(miner=neuron.hotkey, model="", task="attestation", outcome="error", attested=False)
    return Observation(miner=neuron.hotkey, model="", task="attestation", outcome="ok", attested=True)


async def run_validator(ctx: ValidatorContext, *, round_interval: float = 1.0) -> None:
    """Challenge, score and set weights until cancelled."""
    states, tempo = await ctx.scores.load()
    observations: list[Observation] = []
    epoch_at = await ctx.chain.get_next_epoch_block(ctx.netuid)
    pending_weights = False
    while True:
        metagraph = await ctx.chain.get_metagraph(ctx.netuid)
        miners = [n for n in metagraph.neurons if _is_miner(n, ctx.keypair.ss58_address)]
        models = ctx.settings.reference_models
        samples = await ctx.organic.read(100) if ctx.organic is not None else []
        results = await asyncio.gather(*(challenge_miner(ctx, n, m, samples) for n in miners for m in models))
        observations.extend(results)
        attested = await asyncio.gather(*(attest_miner(ctx, n) for n in miners))
        observations.extend(o for o in attested if o is not None)
        block = await ctx.chain.get_current_block()
        if block >= epoch_at:
            tempo += 1
            states = update_scores(states, observations, tempo, ctx.params)
            observations = []
            await ctx.scores.save(states, tempo)
            if ctx.history is not None:
                await ctx.history.record(tempo, block, states)
            epoch_at = await ctx.chain.get_next_epoch_block(ctx.netuid)
            pending_weights = True
        if ctx.pending_reveals:
            await reveal_due(ctx)
        if pending_weights:
            try:
                await set_weights_for(ctx, metagraph, states, tempo)
                pending_weights = False
            except (ce.SettingWeightsTooFast, ce.NoValidatorPermit) as exc:
                log_event(log, "weights deferred", reason=exc.code)
            except ce.ChainUnavailable as exc:
                log_event(log, "chain unavailable; weights retried next round", logging.WARNING, reason=exc.message)
        await asyncio.sleep(round_interval)
