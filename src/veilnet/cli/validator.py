"""`veilnet validator run`."""

from __future__ import annotations

import typer

from veilnet.cli.common import settings_from, veilnet_errors

__all__ = ["app"]

app = typer.Typer(help="Run a validator: challenge miners, verify, score and set weights.", no_args_is_help=True)


@app.command("run")
@veilnet_errors
def run(ctx: typer.Context) -> None:
    """Challenge every served miner, verify answers against the reference model, set weights each epoch."""
    import asyncio

    from veilnet.logs import configure_logging
    from veilnet.validator.run import run_validator_process

    settings = settings_from(ctx)
    configure_logging(settings.log)
    try:
        asyncio.run(run_validator_process(settings))
    except KeyboardInterrupt:
        pass
