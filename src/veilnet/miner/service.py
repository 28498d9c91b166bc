"""The miner's checks as plain functions over a :class:`MinerContext`: authenticate (Epistula, replay, the
caller's standing) and admit (replay and quota in one Redis round trip)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from bittensor_wallet import Keypair

from veilnet import cancelling
from veilnet.chain.interface import Chain
from veilnet.chain.types import Metagraph
from veilnet.confidential.enclave import Enclave
from veilnet.errors import PermissionDenied
from veilnet.models.engine import ModelEngine
from veilnet.protocol.epistula import EpistulaClaims, EpistulaError, verify_request
from veilnet.quotas import Quota, quota_table, validator_stakes
from veilnet.settings import EpistulaSettings, MinerSettings
from veilnet.store.quota import QuotaStore
from veilnet.store.replay import ReplayCache
from veilnet.tasks.interface import ServedTask

__all__ = ["MetagraphHolder", "MinerContext", "admit", "authenticate"]

log = logging.getLogger(__name__)


class MetagraphHolder:
    """The latest metagraph; ``refresh_forever`` keeps it fresh from a chain."""

    def __init__(self, metagraph: Metagraph) -> None:
        self.current = metagraph

    async def refresh_forever(self, chain: Chain, netuid: int, interval: float = 12.0) -> None:
        while True:
            cancelling.raise_if_stopping()
            await asyncio.sleep(interval)
            try:
                self.current = await chain.get_metagraph(netuid)
            except Exception:  # keep serving on the last metagraph; the failure is logged
                log.warning("metagraph refresh failed", exc_info=True)


@dataclass
class MinerContext:
    """Everything a miner app needs, opened and closed by its owner (the CLI or a test)."""

    keypair: Keypair
    engine: ModelEngine
    redis: aioredis.Redis
    metagraph: MetagraphHolder
    settings: MinerSettings
    epistula: EpistulaSettings
    enclave: Enclave | None = None  # set when this miner serves sealed (confidential) requests
    tasks: dict[str, ServedTask] = field(default_factory=dict)  # tasks served by their own engines, by name
    quota: QuotaStore = field(init=False)
    replays: ReplayCache = field(init=False)

    def __post_init__(self) -> None:
        self.quota = QuotaStore(self.redis, self.keypair.ss58_address, self.settings.window_seconds)
        self.replays = ReplayCache(self.redis, self.keypair.ss58_address,
                                   max_clock_skew_ms=self.epistula.max_clock_skew_ms)
        self._quotas: tuple[Metagraph | None, tuple[object, ...], dict[str, Quota]] = (None, (), {})

    def quota_table(self) -> dict[str, Quota]:
        """Each permitted caller's quota under the current metagraph and settings (recomputed when either
        changes, not per request: a subnet has hundreds of neurons)."""
        metagraph, s = self.metagraph.current, self.settings
        terms = (s.capacity_per_window, self.epistula.min_stake)
        cached_metagraph, cached_terms, table = self._quotas
        if cached_metagraph is not metagraph or cached_terms != terms:
            stakes = validator_stakes(metagraph.neurons, self.epistula.min_stake)
            table = quota_table(s.capacity_per_window, stakes)
            self._quotas = (metagraph, terms, table)
        return table


async def authenticate(ctx: MinerContext, headers: Mapping[str, str], body: bytes, *,
                       check_replay: bool = True) -> EpistulaClaims:
    """Epistula checks, then replay (Redis; ``check_replay=False`` leaves it to :func:`admit`, which checks
    it in the same round trip as the quota), then the caller's standing in the metagraph."""
    claims = verify_request(headers, body, receiver=ctx.keypair.ss58_address, max_skew_ms=ctx.epistula.max_clock_skew_ms)
    if check_replay and not await ctx.replays.claim(claims.signed_by, claims.uuid):
        raise EpistulaError("replay", f"request uuid {claims.uuid} was already used")
    neuron = ctx.metagraph.current.by_hotkey(claims.signed_by)
    if neuron is None:
        raise PermissionDenied(f"caller {claims.signed_by} is not registered on subnet {ctx.metagraph.current.netuid}",
                               code="not_registered")
    min_stake = ctx.epistula.min_stake
    if not neuron.validator_permit and (min_stake is None or neuron.stake < min_stake):
        raise PermissionDenied(f"caller {claims.signed_by} has no validator permit", code="no_validator_permit")
    return claims


async def admit(ctx: MinerContext, caller: str, *, request_uuid: str | None = None) -> None:
    """Consume one request of ``caller``'s stake-proportional quota (429 when spent; one quota for all the
    caller sends: nothing marks a challenge); with ``request_uuid``,
    refuse a replayed request first, in the same Redis round trip (StoreError, 503, when Redis fails)."""
    quota = ctx.quota_table().get(caller, Quota(0))
    replay_key = ctx.replays.key(caller, request_uuid) if request_uuid is not None else None
    used = await ctx.quota.take(caller, quota, replay_key=replay_key,
                                replay_ttl_ms=ctx.replays.ttl_ms)
    if used is None:
        raise EpistulaError("replay", f"request uuid {request_uuid} was already used")
