"""The gateway assembled: what it is made of (:class:`GatewayContext`, opened and closed by its owner) and
the parts built from it (:class:`Gateway`), each handed only what it uses. The routes in
:mod:`veilnet.gateway.app` call these.

    Gateway
    ├── access       KeyGate: API key, credit, budget, rate limits        (gateway/access.py)
    ├── router       Router: candidates, provider preferences, breakers   (gateway/router.py)
    ├── miners       MinerClient: typed document -> signed request        (relay/miners.py)
    ├── ledger       Ledger: priced usage -> ledger row, metrics, samples  (gateway/ledger.py)
    ├── relay()      Flow per request: attempts, answers, streams          (gateway/flow.py, attempt.py, streams.py)
    └── passthrough  SealedPassthrough: client-sealed requests            (gateway/passthrough.py)
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from bittensor_wallet import Keypair
from fastapi import Request
from fastapi.responses import Response

from veilnet.confidential.sessions import AttestedSessions
from veilnet.dashboard.models import EpochPoint
from veilnet.edge import parse_body, read_body
from veilnet.errors import NotFound
from veilnet.gateway.access import KeyGate
from veilnet.gateway.breaker import CircuitBreaker
from veilnet.gateway.directory import MinerDirectory, MinerOffer
from veilnet.gateway.faults import AttemptOutcome
from veilnet.gateway.flow import Flow, FlowParts
from veilnet.gateway.ledger import Ledger
from veilnet.gateway.passthrough import SealedPassthrough
from veilnet.gateway.router import Router
from veilnet.gateway.stats import GatewayStats
from veilnet.gateway.tasks import TaskRelay
from veilnet.gateway.verification import OrganicVerifier
from veilnet.models.tokenizer import Tokenizer
from veilnet.protocol.gateway import ModelCard, ModelCardList, Pricing
from veilnet.protocol.openai import GatewayRequest
from veilnet.protocol.usage import LedgerStatus
from veilnet.relay import MinerClient, MinerDeadlines, RelayClient
from veilnet.scoring import ScoreState
from veilnet.store.keys import KeyStore
from veilnet.store.organic import OrganicStream, RequestCounter
from veilnet.store.ratelimit import KeyRateLimiter
from veilnet.tasks.interface import Task
from veilnet.tasks.registry import installed_tasks

__all__ = ["Gateway", "GatewayContext", "model_card"]


@dataclass
class GatewayContext:
    """What a gateway is made of; its owner (``veilnet gateway run``, a test) opens and closes these."""

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
    request_timeout: float = 120.0  # seconds for a miner's whole answer
    first_byte_timeout: float = 30.0  # seconds until a miner's answer starts (then the next miner is tried)
    idle_timeout: float = 30.0  # seconds a miner may fall silent mid-answer
    attestations: AttestedSessions | None = None  # None: this gateway routes no confidential requests
    history: Callable[[], Awaitable[list[EpochPoint]]] | None = None  # the dashboard's per-epoch points
    # the validator's whole score states (LatestScores.states): the dashboard's per-task figures
    score_states: Callable[[], Awaitable[Mapping[str, ScoreState]]] | None = None
    on_attempt: Callable[[AttemptOutcome], None] | None = None  # told how each attempt at a miner ended
    tasks: dict[str, Task[Any, Any]] | None = None  # the tasks served on their routes (None: every one installed)
    verifier: OrganicVerifier | None = None  # passes a sample of organic answers to the validator's scorers
    tokenizers: dict[str, Tokenizer] = field(default_factory=dict)  # model -> its tokenizer: apps billed from own count


def model_card(model: str, offers: list[MinerOffer]) -> ModelCard:
    """A model as the gateway offers it: the cheapest miner's price, the longest context, every miner's inputs."""
    cheapest = min(offers, key=lambda o: o.price_input + o.price_output)
    return ModelCard(id=model, context_length=max(o.context_length for o in offers),
                     pricing=Pricing(prompt=cheapest.price_input / 1e6, completion=cheapest.price_output / 1e6),
                     providers=len(offers),
                     input_modalities=sorted(set().union(*(o.input_modalities for o in offers))))


class Gateway:
    def __init__(self, ctx: GatewayContext, *, max_body_bytes: int, keepalive_seconds: float) -> None:
        self.directory = ctx.directory
        self.breaker = ctx.breaker
        self.stats = ctx.stats
        self.scores = ctx.scores
        self.netuid = ctx.netuid
        self.http = ctx.http
        self.keypair = ctx.keypair
        self.attestations = ctx.attestations
        self.history = ctx.history
        self.score_states = ctx.score_states
        self.max_body_bytes = max_body_bytes
        self.access = KeyGate(ctx.keys, ctx.ratelimit)
        self.router = Router(ctx.directory, ctx.scores, ctx.breaker, ctx.stats, ctx.rng, ctx.attestations)
        deadlines = MinerDeadlines(total=ctx.request_timeout, first_byte=min(ctx.first_byte_timeout, ctx.request_timeout),
                                   idle=ctx.idle_timeout)
        counts = ctx.organic_counts
        self.miners = MinerClient(ctx.keypair, ctx.relay, deadlines,
                                  on_send=counts.count if counts is not None else None)  # it uses our quota there
        self.ledger = Ledger(ctx.keys, ctx.stats, ctx.directory, ratelimit=ctx.ratelimit, organic=ctx.organic,
                             on_attempt=ctx.on_attempt, verifier=ctx.verifier, tokenizers=ctx.tokenizers)
        self._parts = FlowParts(self.router, self.miners, ctx.breaker, self.ledger, keepalive_seconds)
        tasks = installed_tasks() if ctx.tasks is None else ctx.tasks
        self.units = {name: task.unit for name, task in tasks.items()}  # what each task's throughput counts
        self.tasks = TaskRelay({name: t for name, t in tasks.items() if not t.language_model}, self.access,
                               self._parts, ctx.directory)
        self.passthrough = SealedPassthrough(self.access, ctx.directory, ctx.attestations, self.miners, ctx.breaker,
                                             self.ledger, max_body_bytes=max_body_bytes)

    async def relay(self, request: Request, schema: type[GatewayRequest], *, body: bytes | None = None) -> Response:
        """Serve one OpenAI request: admit its key, parse its body (``body``: already read), route it and
        answer (streamed or whole)."""
        started = time.perf_counter()
        key = await self.access.admit(request.headers.get("authorization"))
        if body is None:
            body = await read_body(request, self.max_body_bytes)
        parsed: GatewayRequest = parse_body(schema, body)
        flow = Flow(self._parts, key, parsed, started)
        try:
            return await (flow.stream() if flow.streamed else flow.answer())
        except BaseException as exc:  # whatever no path recorded is recorded now, and its hold released
            status = LedgerStatus.CLIENT_DISCONNECTED if isinstance(exc, asyncio.CancelledError) else LedgerStatus.ERROR
            flow.entry.end(status, f"the request ended: {type(exc).__name__}")
            raise

    def models(self) -> ModelCardList:
        return ModelCardList(data=[model_card(model, offers) for model, offers in sorted(self.directory.models().items())])

    def model(self, model: str) -> ModelCard:
        offers = self.directory.models().get(model)
        if not offers:
            raise NotFound(f"no miner serves model {model!r}", code="model_not_found")
        return model_card(model, offers)
