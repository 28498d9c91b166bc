"""The ``veilnet`` command. Each concern registers its sub-commands from its own module."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from veilnet.cli import chain as chain_cli
from veilnet.cli import confidential as confidential_cli
from veilnet.cli import devnet as devnet_cli
from veilnet.cli import gateway as gateway_cli
from veilnet.cli import keys as keys_cli
from veilnet.cli import miner as miner_cli
from veilnet.cli import new_task as new_task_cli
from veilnet.cli import sim as sim_cli
from veilnet.cli import validator as validator_cli
from veilnet.cli import wallet as wallet_cli
from veilnet.cli.common import CliState

__all__ = ["app", "main"]

app = typer.Typer(
    name="veilnet",
    help="veilnet: a Bittensor inference subnet — miners, validators, gateway and an embedded devnet chain.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"veilnet {version('veilnet')}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML settings file (env VEILNET_* overrides it).")
    ] = None,
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_version, help="Print veilnet's version and exit.")] = False,
) -> None:
    ctx.obj = CliState(config_file=config)


app.add_typer(wallet_cli.app, name="wallet")
app.add_typer(chain_cli.app, name="chain")
app.add_typer(miner_cli.app, name="miner")
app.add_typer(validator_cli.app, name="validator")
app.add_typer(gateway_cli.app, name="gateway")
app.add_typer(keys_cli.app, name="keys")
app.add_typer(devnet_cli.app, name="devnet")
app.command("confidential-proxy")(confidential_cli.confidential_proxy)
app.command("new-task")(new_task_cli.new_task)
app.command("sim")(sim_cli.sim)


def main() -> None:
    app()
