"""`veilnet chain ...` commands: the epoch what-if tool and the devnet chain server."""

from __future__ import annotations

import typer

from veilnet.cli.chain_epoch import epoch_command

__all__ = ["app"]

app = typer.Typer(help="Chain tools: run one epoch from a scenario, serve the devnet chain.", no_args_is_help=True)
app.command("epoch")(epoch_command)
