"""`veilnet miner run`."""

from __future__ import annotations

from typing import Annotated

import typer

from veilnet.cli.common import (
    HotkeyOption,
    NetuidOption,
    NetworkOption,
    WalletOption,
    apply_service_options,
    ask_coldkey_password,
    settings_from,
    veilnet_errors,
)

__all__ = ["app"]

app = typer.Typer(help="Run a miner: serve models to the subnet's validators.", no_args_is_help=True)


@app.command("run")
@veilnet_errors
def run(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port")] = None,
    backend: Annotated[str | None, typer.Option("--backend", help="llamacpp or openai.")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="Model to serve (repeatable).")] = None,
    upstream_url: Annotated[str | None, typer.Option("--upstream-url", help="OpenAI-compatible base URL.")] = None,
    register: Annotated[bool, typer.Option("--register", help="Burn-register the hotkey if needed.")] = False,
    wallet: WalletOption = None,
    hotkey: HotkeyOption = None,
    netuid: NetuidOption = None,
    network: NetworkOption = None,
) -> None:
    """Register if asked, serve the axon on chain and answer validators' signed requests."""
    import uvloop

    from veilnet.logs import configure_logging
    from veilnet.miner.run import run_miner

    settings = settings_from(ctx)
    apply_service_options(settings, wallet=wallet, hotkey=hotkey, netuid=netuid, network=network)
    miner = settings.miner
    updates = {
        "host": host or miner.host,
        "port": port or miner.port,
        "backend": backend or miner.backend,
        "models": model or miner.models,
        "upstream_url": upstream_url or miner.upstream_url,
        "auto_register": register or miner.auto_register,
    }
    settings.miner = miner.model_validate({**miner.model_dump(), **updates})
    if settings.miner.auto_register:
        ask_coldkey_password(settings)
    configure_logging(settings.log)
    try:
        uvloop.run(run_miner(settings))
    except KeyboardInterrupt:
        pass
