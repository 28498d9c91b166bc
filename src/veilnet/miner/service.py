"""The miner's logic as plain functions over a :class:`MinerContext`: authenticate, admit, run."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from bittensor_wallet import Keypair

from veilnet.chain.interface import Chain
from veilnet.chain.types import Metagraph
from veilnet.confidential.enclave import Enclave
from veilnet.errors import PermissionDenied, StoreError
from veilnet.models.engine import ModelEngine
from veilnet.protocol.epistula import EpistulaClaims, EpistulaError, verify_request
from veilnet.quotas import quota_for, validator_stakes
from veilnet.settings import EpistulaSettings, MinerSettings
from veilnet.store.quota import QuotaStore
from veilnet.store.redis import KeySpace

__all__ = ["MetagraphHolder", "MinerContext", "admit", "authenticate"]

log = logging.getLogger(__name__)


class MetagraphHolder:
    """The latest metagraph; ``refresh_forever`` keeps it fresh from a chain."""

    def __init__(self, metagraph: Metagraph) -> None:
        self.current = metagraph

    async def refresh_forever(self, chain: Chain, netuid: int, interval: float = 12.0) -> None:
        while True:
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
    quota: QuotaStore = field(init=False)
    replay_keys: KeySpace = field(init=False)

    def __post_init__(self) -> None:
        self.quota = QuotaStore(self.redis, self.keypair.ss58_address, self.settings.window_seconds)
        self.replay_keys = KeySpace(f"veilnet:replay:{self.keypair.ss58_address}")


async def authenticate(ctx: MinerContext, headers: Mapping[str, str], body: bytes) -> EpistulaClaims:
    """Epistula checks, then replay (Redis), then the caller's standing in the metagraph."""
    claims = verify_request(headers, body, receiver=ctx.keypair.ss58_address, max_skew_ms=ctx.epistula.max_clock_skew_ms)
    try:
        fresh = await ctx.redis.set(
            ctx.replay_keys(claims.signed_by, claims.uuid), b"1", nx=True, px=2 * ctx.epistula.max_clock_skew_ms + 1000
        )
    except (aioredis.RedisError, OSError) as exc:
        raise StoreError(f"replay cache unavailable: {exc}") from exc
    if not fresh:
        raise EpistulaError("replay", f"request uuid {claims.uuid} was already used")
    neuron = ctx.metagraph.current.by_hotkey(claims.signed_by)
    if neuron is None:
        raise PermissionDenied(f"caller {claims.signed_by} is not registered on subnet {ctx.metagraph.current.netuid}",
                               code="not_registered")
    min_stake = ctx.epistula.min_stake
    if not neuron.validator_permit and (min_stake is None or neuron.stake < min_stake):
        raise PermissionDenied(f"caller {claims.signed_by} has no validator permit", code="no_validator_permit")
    return claims


async def admit(ctx: MinerContext, caller: str, *, synthetic: bool) -> None:
    """Consume one request of ``caller``'s stake-proportional quota (429 when spent)."""
    quota = quota_for(
        ctx.settings.capacity_per_window,
        validator_stakes(ctx.metagraph.current.neurons, ctx.epistula.min_stake),
        caller,
        ctx.settings.synthetic_share,
    )
    try:
        await ctx.quota.take(caller, quota, synthetic=synthetic)
    except (aioredis.RedisError, OSError) as exc:
        raise StoreError(f"quota store unavailable: {exc}") from exc
