"""Which miners to try for a request, in order: the miners serving its model, filtered by what the request
needs and by OpenRouter's ``provider`` preferences, healthy ones only (breakers), ranked
(:func:`~veilnet.gateway.routing.rank_candidates`). A confidential request's miners come with their verified
attestation, looked up here once, so the attempt seals to exactly what routing chose."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from veilnet.confidential.errors import PrivacyRestricted
from veilnet.confidential.sessions import AttestedMiner, AttestedSessions
from veilnet.errors import InvalidRequest, NotFound, Overloaded
from veilnet.gateway.breaker import CircuitBreaker
from veilnet.gateway.confidential import attested_for
from veilnet.gateway.directory import MinerDirectory
from veilnet.gateway.routing import Candidate, rank_candidates
from veilnet.gateway.stats import GatewayStats
from veilnet.protocol.openai import TEXT_ONLY, ProviderPreferences

__all__ = ["MAX_ATTEMPTS", "NO_PREFERENCES", "Needs", "Route", "Router"]

MAX_ATTEMPTS = 3  # miners tried per model before the first byte
NO_PREFERENCES = ProviderPreferences()  # a request without a provider object (read, never changed)


@dataclass(frozen=True, slots=True)
class Needs:
    """What a request needs of a miner beyond serving its model."""

    provider: ProviderPreferences = field(default_factory=lambda: NO_PREFERENCES)
    embeddings: bool = False
    parameters: frozenset[str] = frozenset()  # the sampling parameters it sets
    functional: frozenset[str] = frozenset()  # tools, structured output, n > 1: every miner must declare them
    modalities: frozenset[str] = TEXT_ONLY  # the kinds of input it holds
    prompt_tokens: int = 0  # tokens the prompt surely has (protocol.openai.prompt_token_floor)


@dataclass(frozen=True, slots=True)
class Route:
    candidate: Candidate
    attested: AttestedMiner | None = None  # set: seal the request to this attested enclave


class Router:
    def __init__(self, directory: MinerDirectory, scores: Callable[[], Awaitable[dict[str, float]]],
                 breaker: CircuitBreaker, stats: GatewayStats, rng: random.Random,
                 attestations: AttestedSessions | None) -> None:
        self.directory = directory
        self.breaker = breaker
        self._scores = scores
        self._stats = stats
        self._rng = rng
        self._attestations = attestations

    async def route(self, model: str, needs: Needs) -> list[Route]:
        """Healthy miners serving ``model`` that meet ``needs``, in the order to try them (at most
        ``MAX_ATTEMPTS``). NotFound when none could ever serve it, PrivacyRestricted when none is attested
        as a confidential request requires, Overloaded when those that could are all cooling down."""
        candidates = self.directory.candidates(model, await self._scores(), embeddings=needs.embeddings)
        if not candidates:
            served = sorted(self.directory.models())
            raise NotFound(f"no miner serves model {model!r}; available: {', '.join(served) or 'none yet'}",
                           code="model_not_found")
        prefs = needs.provider
        candidates = _fitting(candidates, model, needs.prompt_tokens)
        candidates = _matching(candidates, model, needs)
        attested: dict[str, AttestedMiner] = {}
        if prefs.confidential != "off":
            for c in candidates:
                miner = attested_for(self._attestations, c.hotkey, model, prefs.attestation)
                if miner is not None:
                    attested[c.hotkey] = miner
            if prefs.confidential == "required":
                candidates = [c for c in candidates if c.hotkey in attested]
                if not candidates:
                    raise PrivacyRestricted(f"no miner serving {model!r} has fresh verified TEE attestation meeting "
                                            "the request's provider.attestation (provider.confidential=required)")
        ordered = self._ordered([c for c in candidates if self.breaker.allows(c.hotkey)], prefs, attested)
        if not ordered:
            raise Overloaded(f"no healthy miner can serve {model!r} within the provider preferences", retry_after=1)
        return [Route(c, attested.get(c.hotkey)) for c in ordered[:MAX_ATTEMPTS]]

    def _ordered(self, healthy: list[Candidate], prefs: ProviderPreferences,
                 attested: dict[str, AttestedMiner]) -> list[Candidate]:
        ordered = rank_candidates(
            healthy, self._rng, sort=prefs.sort,
            latency_ms=self._stats.latency_p50() if prefs.sort == "latency" else None,
            throughput=self._stats.throughput() if prefs.sort == "throughput" else None,
        )
        if prefs.order:
            order = prefs.order
            ordered.sort(key=lambda c: order.index(c.hotkey) if c.hotkey in order else len(order))
        if prefs.confidential == "preferred":
            ordered.sort(key=lambda c: c.hotkey not in attested)  # attested first; stable within each group
        return ordered if prefs.allow_fallbacks else ordered[:1]


def _fitting(candidates: list[Candidate], model: str, prompt_tokens: int) -> list[Candidate]:
    """The candidates whose context holds a prompt of ``prompt_tokens``; a prompt no miner's context holds is
    the app's error (``context_length_exceeded``, 400), decided before any miner is tried."""
    fitting = [c for c in candidates if c.context_length > prompt_tokens]
    if not fitting:
        limit = max(c.context_length for c in candidates)
        raise InvalidRequest(f"model {model!r} has a context of {limit} tokens; the prompt has at least "
                             f"{prompt_tokens}. Shorten the messages", param="messages",
                             code="context_length_exceeded")
    return fitting


def _matching(candidates: list[Candidate], model: str, needs: Needs) -> list[Candidate]:
    """The candidates the request's needs and provider preferences allow (NotFound naming what none meets)."""
    prefs = needs.provider
    if prefs.only:
        candidates = [c for c in candidates if c.hotkey in prefs.only]
    if prefs.ignore:
        ignore = prefs.ignore
        candidates = [c for c in candidates if c.hotkey not in ignore]
    if prefs.max_price is not None:
        prompt_max, completion_max = prefs.max_price.prompt, prefs.max_price.completion
        candidates = [
            c for c in candidates
            if (prompt_max is None or c.price_input <= prompt_max)
            and (completion_max is None or c.price_output <= completion_max)
        ]
    if needs.modalities is not TEXT_ONLY:
        candidates = [c for c in candidates if needs.modalities <= c.input_modalities]
        if not candidates:
            kinds = " and ".join(sorted(needs.modalities - TEXT_ONLY))
            raise NotFound(f"no miner serving {model!r} takes {kinds} input", code="no_endpoints")
    if needs.functional:
        candidates = [c for c in candidates if needs.functional <= c.supported_parameters]
        if not candidates:
            raise NotFound(f"no miner serving {model!r} supports the request's "
                           f"{', '.join(sorted(needs.functional))} (parameters it declares in supported_parameters)",
                           code="no_endpoints")
    if prefs.require_parameters and needs.parameters:
        candidates = [c for c in candidates if needs.parameters <= c.supported_parameters]
        if not candidates:
            raise NotFound(f"no miner serving {model!r} supports all of {', '.join(sorted(needs.parameters))} "
                           "(provider.require_parameters)", code="no_endpoints")
    if prefs.data_collection == "deny":
        candidates = [c for c in candidates if c.data_collection == "deny"]
        if not candidates:
            raise NotFound(f"no miner serving {model!r} declares that it keeps no data "
                           "(provider.data_collection=deny)", code="no_endpoints")
    if not candidates:
        raise NotFound(f"no miner serving {model!r} matches the request's provider preferences (only, ignore, "
                       "max_price)", code="no_endpoints")
    return candidates
