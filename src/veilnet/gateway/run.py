"""Running the gateway process: chain, Redis (validator scores), SQL (keys, ledger), HTTP to miners."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp

from veilnet.chain.connect import chain_from_settings
from veilnet.confidential.config import verifier_from_settings
from veilnet.confidential.sessions import AttestedSessions
from veilnet.connections import ConnectionTimeouts
from veilnet.dashboard import EpochHistory
from veilnet.errors import VeilnetError
from veilnet.gateway.app import create_gateway_app
from veilnet.gateway.confidential import attest_forever
from veilnet.gateway.directory import MinerDirectory
from veilnet.gateway.outcomes import OrganicOutcomes
from veilnet.gateway.service import GatewayContext
from veilnet.gateway.verification import OrganicVerifier
from veilnet.logs import log_event
from veilnet.models.tokenizer import Tokenizer, open_llamacpp_tokenizer
from veilnet.relay import RelayClient
from veilnet.serving import serve, stop_on_signals
from veilnet.settings import Settings
from veilnet.store.history import ScoreHistory
from veilnet.store.keys import KeyStore
from veilnet.store.organic import OrganicStream, RequestCounter
from veilnet.store.ratelimit import KeyRateLimiter
from veilnet.store.redis import open_redis
from veilnet.store.scores import LatestScores, ScoreStore
from veilnet.store.sql import DatabaseTimeouts, open_database
from veilnet.store.validator_pipeline import ValidatorPipeline
from veilnet.wallet import load_wallet

__all__ = ["open_miner_http", "run_gateway"]

log = logging.getLogger(__name__)


def open_miner_http() -> aiohttp.ClientSession:
    """The gateway's HTTP session for miners' /capacity and attestation (the requests it relays go through a
    :class:`~veilnet.relay.RelayClient`): no cap on open connections (aiohttp's default of 100 would queue the
    101st behind the others)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))


async def run_gateway(settings: Settings) -> None:
    """Serve until SIGTERM / SIGINT (or cancellation), then close in order: requests in flight finish (up to
    ``gateway.drain_seconds``), then the stores write what they hold — the ledger retrying for up to
    ``gateway.ledger_close_seconds`` — and the connections close (a bundled Redis stops)."""
    wallet = load_wallet(settings.wallet)
    netuid = settings.chain.netuid
    timeouts = DatabaseTimeouts.from_settings(settings.database)
    async with stop_on_signals() as stop, contextlib.AsyncExitStack() as stack:
        if settings.chain.network == "devnet":
            import veilnet.devnet.chain  # noqa: F401  (registers the devnet chain backend)
        chain = await stack.enter_async_context(chain_from_settings(settings.chain))
        redis = await stack.enter_async_context(open_redis(settings.redis))
        engine = await stack.enter_async_context(open_database(settings.database_url(), timeouts=timeouts))
        http = await stack.enter_async_context(open_miner_http())
        relay = await stack.enter_async_context(RelayClient())
        keys = await stack.enter_async_context(KeyStore(engine, timeout=timeouts.operation,
                                                        close_seconds=settings.gateway.ledger_close_seconds))
        ratelimit = await stack.enter_async_context(KeyRateLimiter(
            redis, requests_per_minute=settings.gateway.requests_per_minute,
            tokens_per_minute=settings.gateway.tokens_per_minute))
        directory = MinerDirectory(http, wallet.hotkey.ss58_address)
        await directory.refresh(await chain.get_metagraph(netuid))
        log_event(log, "miner directory read", logging.INFO, offers=len(directory.offers))
        refresher = asyncio.create_task(directory.refresh_forever(chain, netuid))
        stack.callback(refresher.cancel)
        # the validator's scores change once a tempo: re-read every second in the background
        scores = await stack.enter_async_context(LatestScores(ScoreStore(redis, wallet.hotkey.ss58_address, netuid)))

        tokenizers: dict[str, Tokenizer] = {}  # apps are billed from the gateway's own count for these models
        counted = settings.gateway.tokenizer_models
        for model in settings.validator.reference_models if counted is None else counted:
            try:
                tokenizers[model] = await stack.enter_async_context(
                    open_llamacpp_tokenizer(model, settings.data_dir / "models"))
                log_event(log, "tokenizer ready", logging.INFO, model=model)
            except VeilnetError as exc:  # an unknown or missing model: its requests bill the miners' claims
                log_event(log, "no tokenizer; billing miners' claims", logging.WARNING, model=model, reason=exc.message)

        ctx = GatewayContext(
            keypair=wallet.hotkey, keys=keys, directory=directory, http=http, scores=scores, relay=relay,
            netuid=netuid, request_timeout=settings.gateway.request_timeout,
            first_byte_timeout=settings.gateway.first_byte_timeout, idle_timeout=settings.gateway.idle_timeout,
            ratelimit=ratelimit,
            organic_counts=await stack.enter_async_context(RequestCounter(redis, "organic", wallet.hotkey.ss58_address, netuid)),
            organic=await stack.enter_async_context(
                OrganicStream(redis, netuid, sample_rate=settings.gateway.organic_sample_rate)),
            attestations=AttestedSessions(verifier_from_settings(settings.confidential)),
            history=EpochHistory(ScoreHistory(engine, wallet.hotkey.ss58_address, netuid)),
            score_states=scores.states,
            # each attempt's outcome reaches this validator's scores (reliability), docs/scoring.md
            on_attempt=await stack.enter_async_context(
                OrganicOutcomes(ValidatorPipeline(redis, wallet.hotkey.ss58_address, netuid),
                                sample_rate=settings.gateway.organic_sample_rate)),
            # a sample of organic answers, as the miners signed them, reaches this validator's scorers
            verifier=await stack.enter_async_context(
                OrganicVerifier(ValidatorPipeline(redis, wallet.hotkey.ss58_address, netuid),
                                wallet.hotkey.ss58_address, rate=settings.gateway.organic_verify_rate,
                                models=settings.validator.reference_models, tasks=settings.validator.tasks)),
            tokenizers=tokenizers,
        )
        attester = asyncio.create_task(attest_forever(ctx))
        stack.callback(attester.cancel)
        # leaving the stack writes the last ledger rows, organic samples and request counts
        await serve(create_gateway_app(ctx, max_body_bytes=settings.gateway.max_body_bytes),
                    host=settings.gateway.host, port=settings.gateway.port, stop=stop,
                    timeouts=ConnectionTimeouts.from_settings(settings.http), lifespan="on",
                    timeout_graceful_shutdown=settings.gateway.drain_seconds)
