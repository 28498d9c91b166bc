"""`veilnet gateway run`."""

from __future__ import annotations

from typing import Annotated

import typer

from veilnet.cli.common import (
    HotkeyOption,
    NetuidOption,
    NetworkOption,
    WalletOption,
    apply_service_options,
    settings_from,
    veilnet_errors,
)

__all__ = ["app"]

app = typer.Typer(help="Run the OpenAI-compatible gateway (a validator's public face).", no_args_is_help=True)


@app.command("run")
@veilnet_errors
def run(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port")] = None,
    wallet: WalletOption = None,
    hotkey: HotkeyOption = None,
    netuid: NetuidOption = None,
    network: NetworkOption = None,
) -> None:
    """Serve /v1/chat/completions, /v1/completions, /v1/models, /api/v1/key and /health."""
    import uvloop

    from veilnet.gateway.run import run_gateway
    from veilnet.logs import configure_logging

    settings = settings_from(ctx)
    apply_service_options(settings, wallet=wallet, hotkey=hotkey, netuid=netuid, network=network)
    if host:
        settings.gateway.host = host
    if port:
        settings.gateway.port = port
    configure_logging(settings.log)
    try:
        uvloop.run(run_gateway(settings))
    except KeyboardInterrupt:
        pass
