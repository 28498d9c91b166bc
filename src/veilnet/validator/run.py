"""Running validator roles in a process: open the chain, Redis, SQL, HTTP and — for a scorer — the reference
model and the engines of the tasks whose organic answers it compares with its own reading — then run the roles
(all three unless told otherwise; separate processes share the work over Redis)."""

from __future__ import annotations

import contextlib
from collections.abc import Collection

import aiohttp

from veilnet.chain.connect import chain_from_settings
from veilnet.confidential.config import verifier_from_settings
from veilnet.confidential.sessions import AttestedSessions
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.relay import RelayClient
from veilnet.scoring import ScoreParams
from veilnet.serving import stop_on_signals
from veilnet.settings import Settings, ValidatorSettings
from veilnet.store.history import ScoreHistory
from veilnet.store.organic import OrganicStream, RequestCounter
from veilnet.store.redis import open_redis
from veilnet.store.scores import ScoreStore
from veilnet.store.sql import DatabaseTimeouts, open_database
from veilnet.store.validator_pipeline import ValidatorPipeline
from veilnet.tasks.registry import installed_tasks, select_tasks
from veilnet.validator.asking import challenge_client
from veilnet.validator.engines import OrganicEngines
from veilnet.validator.service import ROLES, ValidatorContext, run_validator
from veilnet.wallet import load_wallet

__all__ = ["run_validator_process", "score_params"]


def score_params(settings: ValidatorSettings) -> ScoreParams:
    """The scoring parameters a validator's settings choose (the rest are :class:`ScoreParams`' defaults)."""
    return ScoreParams(ema_alpha=settings.score_ema_alpha, sharpen=settings.sharpen_exponent,
                       task_shares=dict(settings.task_shares))


async def run_validator_process(settings: Settings, roles: Collection[str] = ROLES) -> None:
    """Challenge, verify, score and set weights (the given roles) until SIGTERM / SIGINT or cancellation; then
    what the process holds (request counts) is written and its connections close (a bundled Redis stops)."""
    wallet = load_wallet(settings.wallet)
    netuid = settings.chain.netuid
    me = wallet.hotkey.ss58_address
    timeouts = DatabaseTimeouts.from_settings(settings.database)
    async with stop_on_signals(), contextlib.AsyncExitStack() as stack:
        if settings.chain.network == "devnet":
            import veilnet.devnet.chain  # noqa: F401  (registers the devnet chain backend)
        chain = await stack.enter_async_context(chain_from_settings(settings.chain))
        redis = await stack.enter_async_context(open_redis(settings.redis))
        reference = None
        engines: OrganicEngines | None = None
        if "scorer" in roles:  # only scorers hold the models
            models = settings.validator.reference_models
            reference = LlamaCppEngine(models, cache_dir=settings.data_dir / "models", concurrency=1, tokenizer=True,
                                       embedding_models=models if settings.validator.embedding_share > 0 else None,
                                       threads=settings.llamacpp.resolved_threads())
            await stack.enter_async_context(reference)
            wanted = settings.validator.tasks
            engines = await stack.enter_async_context(OrganicEngines(
                installed_tasks() if wanted is None else select_tasks(wanted), settings.data_dir,
                threads=settings.llamacpp.resolved_threads()))
        http = await stack.enter_async_context(aiohttp.ClientSession())
        engine = await stack.enter_async_context(open_database(settings.database_url(), timeouts=timeouts))
        relay = await stack.enter_async_context(RelayClient())  # as the gateway's: challenges look the same
        synthetic = await stack.enter_async_context(RequestCounter(redis, "synthetic", me, netuid))
        ctx = ValidatorContext(
            keypair=wallet.hotkey, chain=chain, netuid=netuid, reference=reference, http=http,
            scores=ScoreStore(redis, me, netuid), settings=settings.validator,
            pipeline=ValidatorPipeline(redis, me, netuid),
            params=score_params(settings.validator),
            organic=OrganicStream(redis, netuid, sample_rate=1.0),
            history=ScoreHistory(engine, me, netuid, timeout=timeouts.operation),
            attestations=AttestedSessions(verifier_from_settings(settings.confidential)),
            organic_counts=RequestCounter(redis, "organic", me, netuid),
            synthetic_counts=synthetic, miners=challenge_client(wallet.hotkey, relay, synthetic), engines=engines,
        )
        await run_validator(ctx, roles=roles)
