"""`veilnet validator run`."""

from __future__ import annotations

import enum
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

app = typer.Typer(help="Run a validator: challenge miners, verify, score and set weights.", no_args_is_help=True)


class Role(enum.StrEnum):
    challenger = "challenger"
    scorer = "scorer"
    weights = "weights"
    all = "all"


@app.command("run")
@veilnet_errors
def run(
    ctx: typer.Context,
    role: Annotated[list[Role] | None, typer.Option(
        "--role", help="Which roles this process runs (repeat for several; default all). Separate processes "
                       "share the work over Redis: challengers send, scorers verify, one weights role sets.")] = None,
    wallet: WalletOption = None,
    hotkey: HotkeyOption = None,
    netuid: NetuidOption = None,
    network: NetworkOption = None,
) -> None:
    """Challenge every served miner, verify answers against the reference model, set weights each epoch."""
    import asyncio

    from veilnet.logs import configure_logging
    from veilnet.validator.run import run_validator_process
    from veilnet.validator.service import ROLES

    settings = settings_from(ctx)
    apply_service_options(settings, wallet=wallet, hotkey=hotkey, netuid=netuid, network=network)
    configure_logging(settings.log)
    chosen = {r.value for r in role or [Role.all]}
    roles = set(ROLES) if "all" in chosen else chosen
    try:
        asyncio.run(run_validator_process(settings, roles))
    except KeyboardInterrupt:
        pass
