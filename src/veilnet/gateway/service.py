"""The gateway's request flow as plain functions over a :class:`GatewayContext`."""

from __future__ import annotations

import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from bittensor_wallet import Keypair
from pydantic_core import to_json

from veilnet.confidential.errors import PrivacyRestricted
from veilnet.confidential.sessions import AttestedSessions
from veilnet.dashboard.models import EpochPoint
from veilnet.errors import AuthenticationError, NotFound, Overloaded, PaymentRequired
from veilnet.gateway.confidential import attested_for
from veilnet.gateway.directory import MinerDirectory
from veilnet.gateway.routing import Candidate, CircuitBreaker, rank_candidates
from veilnet.gateway.stats import GatewayStats
from veilnet.protocol.confidential import ENCRYPTION_SCHEME
from veilnet.protocol.epistula import sign_request
from veilnet.protocol.headers import ENCRYPTION_HEADER, TRAFFIC_HEADER
from veilnet.protocol.openai import SAMPLING_PARAMETERS, ProviderPreferences
from veilnet.relay import RelayClient, RelayResponse
from veilnet.store.keys import ApiKey, KeyStore
from veilnet.store.organic import OrganicStream, RequestCounter
from veilnet.store.ratelimit import KeyRateLimiter

__all__ = [
    "GatewayContext", "authenticate_key", "bearer_key", "cost_usd", "estimated_usage", "new_generation_id",
    "open_miner_request",
    "requested_parameters", "route",
]

MAX_ATTEMPTS = 3
NO_PREFERENCES = ProviderPreferences()  # a request without a provider object (read, never changed)


@dataclass
class GatewayContext:
    keypair: Keypair
    keys: KeyStore
    directory: MinerDirectory
    http: aiohttp.ClientSession  # miners' /capacity and attestation
    scores: Callable[[], Awaitable[dict[str, float]]]
    relay: RelayClient  # the requests the gateway relays to miners
    netuid: int = 1
    ratelimit: KeyRateLimiter | None = None
    organic: OrganicStream | None = None
    organic_counts: RequestCounter | None = None  # requests per miner, which the challenger leaves room for
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    stats: GatewayStats = field(default_factory=GatewayStats)
    rng: random.Random = field(default_factory=random.Random)
    request_timeout: float = 120.0
    attestations: AttestedSessions | None = None  # None: this gateway routes no confidential requests
    history: Callable[[], Awaitable[list[EpochPoint]]] | None = None  # the dashboard's per-epoch points


async def bearer_key(ctx: GatewayContext, authorization: str | None) -> ApiKey:
    """The API key an ``Authorization: Bearer`` header names (AuthenticationError when missing, unknown or
    revoked)."""
    if not authorization or not authorization.lower().startswith("bearer "):
        raise AuthenticationError("missing API key: send 'Authorization: Bearer <key>'", code="invalid_api_key")
    return await ctx.keys.authenticate(authorization[7:].strip())


async def authenticate_key(ctx: GatewayContext, authorization: str | None) -> ApiKey:
    """The key of a request to serve: known, in credit and within its budget (PaymentRequired) and within its
    rate limits."""
    key = await bearer_key(ctx, authorization)
    if key.remaining_usd <= 0:
        raise PaymentRequired(f"API key {key.prefix}… is out of credit; top it up")
    left = key.budget_remaining_usd
    if left is not None and left <= 0:
        raise PaymentRequired(f"API key {key.prefix}… spent its {key.budget_reset} budget of ${key.budget_usd:g}; "
                              f"it resets at {key.budget_resets_at}", code="budget_exceeded")
    if ctx.ratelimit is not None:
        await ctx.ratelimit.admit(key.id)
    return key


def requested_parameters(payload: dict[str, Any]) -> frozenset[str]:
    """The sampling parameters a request sets (what ``provider.require_parameters`` asks miners to honour)."""
    return frozenset(name for name in SAMPLING_PARAMETERS if payload.get(name) is not None)


async def route(
    ctx: GatewayContext,
    model: str,
    provider: ProviderPreferences | None,
    *,
    embeddings: bool = False,
    requested: frozenset[str] = frozenset(),
) -> list[Candidate]:
    """Healthy miners serving ``model`` in the order to try them (OpenRouter ``provider`` preferences)."""
    candidates = ctx.directory.candidates(model, await ctx.scores(), embeddings=embeddings)
    if not candidates:
        served = sorted(ctx.directory.models())
        raise NotFound(f"no miner serves model {model!r}; available: {', '.join(served) or 'none yet'}",
                       code="model_not_found")
    prefs = provider or NO_PREFERENCES
    if prefs.only:
        candidates = [c for c in candidates if c.hotkey in prefs.only]
    candidates = [c for c in candidates if c.hotkey not in (prefs.ignore or [])]
    if prefs.max_price is not None:
        prompt_max, completion_max = prefs.max_price.prompt, prefs.max_price.completion
        candidates = [
            c for c in candidates
            if (prompt_max is None or c.price_input <= prompt_max)
            and (completion_max is None or c.price_output <= completion_max)
        ]
    if prefs.require_parameters and requested:
        candidates = [c for c in candidates if requested <= c.supported_parameters]
        if not candidates:
            raise NotFound(f"no miner serving {model!r} supports all of {', '.join(sorted(requested))} "
                           "(provider.require_parameters)", code="no_endpoints")
    if prefs.data_collection == "deny":
        candidates = [c for c in candidates if c.data_collection == "deny"]
        if not candidates:
            raise NotFound(f"no miner serving {model!r} declares that it keeps no data "
                           "(provider.data_collection=deny)", code="no_endpoints")
    if not candidates:
        raise NotFound(f"no miner serving {model!r} matches the request's provider preferences (only, ignore, "
                       "max_price)", code="no_endpoints")
    attested: set[str] = set()
    if prefs.confidential != "off":
        attested = {c.hotkey for c in candidates if attested_for(ctx, c.hotkey, model, prefs.attestation)}
        if prefs.confidential == "required":
            candidates = [c for c in candidates if c.hotkey in attested]
            if not candidates:
                raise PrivacyRestricted(f"no miner serving {model!r} has fresh verified TEE attestation meeting "
                                        "the request's provider.attestation (provider.confidential=required)")
    healthy = [c for c in candidates if ctx.breaker.allows(c.hotkey)]
    ordered = rank_candidates(
        healthy, ctx.rng, sort=prefs.sort,
        latency_ms=ctx.stats.latency_p50() if prefs.sort == "latency" else None,
        throughput=ctx.stats.throughput() if prefs.sort == "throughput" else None,
    )
    if prefs.order:
        order = prefs.order
        ordered.sort(key=lambda c: order.index(c.hotkey) if c.hotkey in order else len(order))
    if prefs.confidential == "preferred":
        ordered.sort(key=lambda c: c.hotkey not in attested)  # attested first; stable within each group
    if not prefs.allow_fallbacks:
        ordered = ordered[:1]
    if not ordered:
        raise Overloaded(f"no healthy miner can serve {model!r} within the provider preferences", retry_after=5)
    return ordered[:MAX_ATTEMPTS]


def new_generation_id() -> str:
    """A request's id for the app (``X-Generation-Id``) and the ledger: 128 random bits."""
    return "gen-" + os.urandom(16).hex()


def cost_usd(usage: dict[str, Any], candidate: Candidate) -> float:
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return (prompt * candidate.price_input + completion * candidate.price_output) / 1_000_000


def _prompt_chars(payload: dict[str, Any]) -> int:
    """Characters of text in a chat request's messages or a completion request's prompt."""
    texts: list[Any] = []
    for message in payload.get("messages") or []:
        content = message.get("content")
        texts += [content] if isinstance(content, str) else [part.get("text") for part in content or []]
    prompt = payload.get("prompt")
    texts += [prompt] if isinstance(prompt, str) else list(prompt or [])
    return sum(len(text) for text in texts if isinstance(text, str))


def estimated_usage(chunks: int, candidate: Candidate, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a stream cost when its client left before the miner's usage line: one completion token per data
    line relayed (streaming servers send a chunk per token) and one prompt token per four characters of the
    request's text (none when the gateway cannot read it), priced as the miner prices tokens."""
    usage: dict[str, Any] = {"prompt_tokens": 0 if payload is None else _prompt_chars(payload) // 4,
                             "completion_tokens": chunks}
    usage["total_tokens"] = usage["prompt_tokens"] + chunks
    usage["cost"] = cost_usd(usage, candidate)
    return usage


async def open_miner_request(
    ctx: GatewayContext, candidate: Candidate, path: str, payload: dict[str, Any] | None, *,
    sealed_body: bytes | None = None,
) -> RelayResponse:
    """POST the signed request (or ``sealed_body``, a sealed envelope) to a miner; the caller owns (and
    releases) the response. Raises RelayError or TimeoutError when the miner cannot be reached in time."""
    body = sealed_body if sealed_body is not None else to_json(payload)
    headers = sign_request(ctx.keypair, body, candidate.hotkey)
    headers.update({"Content-Type": "application/json", TRAFFIC_HEADER: "organic"})
    if sealed_body is not None:
        headers[ENCRYPTION_HEADER] = ENCRYPTION_SCHEME
    if ctx.organic_counts is not None:
        ctx.organic_counts.count(candidate.hotkey)  # it uses this validator's quota at the miner
    return await ctx.relay.post(f"{candidate.url}{path}", body, headers, timeout=ctx.request_timeout)
