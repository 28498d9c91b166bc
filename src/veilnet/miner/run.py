"""Running a miner process: open the chain, Redis and the engine, register if asked, serve the axon."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from veilnet.chain import errors as ce
from veilnet.chain.connect import chain_from_settings
from veilnet.confidential.config import enclave_from_settings
from veilnet.connections import ConnectionTimeouts
from veilnet.errors import ConfigError
from veilnet.miner.app import create_miner_app
from veilnet.miner.service import MetagraphHolder, MinerContext
from veilnet.miner.tasks import open_task_handlers
from veilnet.models.catalog import model_path
from veilnet.models.llamacpp import LlamaCppEngine
from veilnet.models.upstream import OpenAIUpstreamEngine
from veilnet.serving import serve
from veilnet.settings import Settings
from veilnet.store.redis import open_redis
from veilnet.wallet import load_wallet

__all__ = ["build_engine", "run_miner"]

log = logging.getLogger(__name__)


def build_engine(settings: Settings) -> LlamaCppEngine | OpenAIUpstreamEngine:
    """The language-model engine: ``miner.models`` when the miner serves chat, no model otherwise."""
    miner = settings.miner
    if "chat" not in miner.tasks:
        miner = miner.model_copy(update={"models": [], "embedding_models": [], "backend": "llamacpp"})
    if miner.backend == "llamacpp":
        return LlamaCppEngine(
            miner.models, cache_dir=settings.data_dir / "models", concurrency=miner.max_concurrency,
            queue=miner.max_queue, embedding_models=miner.embedding_models,
            threads=settings.llamacpp.resolved_threads(),
        )
    if miner.upstream_url is None:
        raise ConfigError("backend 'openai' needs VEILNET_MINER__UPSTREAM_URL (e.g. http://127.0.0.1:8000/v1)")
    key = miner.upstream_api_key.get_secret_value() if miner.upstream_api_key else None
    return OpenAIUpstreamEngine(
        miner.upstream_url, miner.models, api_key=key, model_map=miner.upstream_model_map,
        concurrency=miner.max_concurrency, queue=miner.max_queue, embedding_models=miner.embedding_models,
    )


async def run_miner(settings: Settings) -> None:
    """Serve until cancelled (Ctrl-C)."""
    wallet = load_wallet(settings.wallet)
    netuid = settings.chain.netuid
    async with contextlib.AsyncExitStack() as stack:
        if settings.chain.network == "devnet":
            import veilnet.devnet.chain  # noqa: F401  (registers the devnet chain backend)
        chain = await stack.enter_async_context(chain_from_settings(settings.chain))
        redis = await stack.enter_async_context(open_redis(settings.redis))
        metagraph = await chain.get_metagraph(netuid)
        if metagraph.by_hotkey(wallet.hotkey.ss58_address) is None:
            if not settings.miner.auto_register:
                raise ce.NotRegistered(
                    f"hotkey {wallet.hotkey.ss58_address} is not registered on subnet {netuid}; "
                    "register it or set VEILNET_MINER__AUTO_REGISTER=true"
                )
            coldkey = wallet.unlock_coldkey(settings.wallet.coldkey_password)
            uid = await chain.burned_register(netuid, coldkey, wallet.hotkey.ss58_address)
            log.info("registered", extra={"uid": uid, "netuid": netuid})
            metagraph = await chain.get_metagraph(netuid)
        ip = settings.miner.external_ip or settings.miner.host
        axon = await chain.get_axon(netuid, wallet.hotkey.ss58_address)
        if axon is None or axon.ip != ip or axon.port != settings.miner.port:
            await chain.serve_axon(netuid, wallet.hotkey, ip=ip, port=settings.miner.port)
        engine = build_engine(settings)
        await stack.enter_async_context(engine)
        holder = MetagraphHolder(metagraph)
        refresher = asyncio.create_task(holder.refresh_forever(chain, netuid, settings.miner.metagraph_refresh_seconds))
        stack.callback(refresher.cancel)
        weights = {name: model_path(name, settings.data_dir / "models") if settings.miner.backend == "llamacpp" else None
                   for name in (info.name for info in engine.models())}
        enclave = enclave_from_settings(settings.confidential, settings.data_dir, wallet.hotkey, weights)
        tasks = await open_task_handlers(stack, settings, engine)
        ctx = MinerContext(
            keypair=wallet.hotkey, engine=engine, redis=redis, metagraph=holder, settings=settings.miner,
            epistula=settings.epistula, enclave=enclave, tasks=tasks,
        )
        log.info("miner serving", extra={"hotkey": wallet.hotkey.ss58_address, "port": settings.miner.port})
        await serve(create_miner_app(ctx), host=settings.miner.host, port=settings.miner.port,
                    timeouts=ConnectionTimeouts.from_settings(settings.http))
