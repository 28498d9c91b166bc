"""Running a validator process: open the chain, Redis, the reference model and HTTP, then loop."""

from __future__ import annotations

import contextlib

import aiohttp

from veilnet.chain.connect import chain_from_settings
from veilnet.confidential.config import verifier_from_settings
from veilnet.confidential.sessions import AttestedSessions
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.scoring import ScoreParams
from veilnet.settings import Settings
from veilnet.store.history import ScoreHistory
from veilnet.store.organic import OrganicStream
from veilnet.store.redis import open_redis
from veilnet.store.scores import ScoreStore
from veilnet.store.sql import open_database
from veilnet.validator.service import ValidatorContext, run_validator
from veilnet.wallet import load_wallet

__all__ = ["run_validator_process"]


async def run_validator_process(settings: Settings) -> None:
    """Challenge, verify, score and set weights until cancelled (all roles in this process)."""
    wallet = load_wallet(settings.wallet)
    netuid = settings.chain.netuid
    async with contextlib.AsyncExitStack() as stack:
        chain = await stack.enter_async_context(chain_from_settings(settings.chain))
        redis = await stack.enter_async_context(open_redis(settings.redis))
        reference = LlamaCppEngine(settings.validator.reference_models, cache_dir=settings.data_dir / "models",
                                   concurrency=1)
        await stack.enter_async_context(reference)
        http = await stack.enter_async_context(aiohttp.ClientSession())
        engine = await stack.enter_async_context(open_database(settings.database_url()))
        ctx = ValidatorContext(
            keypair=wallet.hotkey, chain=chain, netuid=netuid, reference=reference, http=http,
            scores=ScoreStore(redis, wallet.hotkey.ss58_address, netuid), settings=settings.validator,
            params=ScoreParams(sharpen=settings.validator.sharpen_exponent),
            organic=OrganicStream(redis, netuid, sample_rate=1.0),
            history=ScoreHistory(engine, wallet.hotkey.ss58_address, netuid),
            attestations=AttestedSessions(verifier_from_settings(settings.confidential)),
        )
        await run_validator(ctx)
