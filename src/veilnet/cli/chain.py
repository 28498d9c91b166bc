"""`veilnet chain ...` commands: the epoch what-if tool and the devnet chain server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from veilnet.cli.chain_epoch import epoch_command
from veilnet.cli.common import console, settings_from, veilnet_errors

__all__ = ["app"]

app = typer.Typer(help="Chain tools: run one epoch from a scenario, serve the devnet chain.", no_args_is_help=True)
app.command("epoch")(epoch_command)


@app.command("serve")
@veilnet_errors
def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Bind address (default settings devnet.host).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default settings devnet.port, 9944).")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Where the chain state lives.")] = None,
    block_time: Annotated[float | None, typer.Option("--block-time", min=0.01, help="Seconds per block.")] = None,
) -> None:
    """Serve the embedded devnet chain over HTTP; state persists in <data-dir>/chain.sqlite3."""
    import asyncio

    from veilnet.connections import ConnectionTimeouts
    from veilnet.devnet.chain import DevnetChain
    from veilnet.devnet.chain.server import create_chain_app
    from veilnet.logs import configure_logging
    from veilnet.serving import serve as serve_app

    settings = settings_from(ctx)
    configure_logging(settings.log)
    directory = data_dir or settings.devnet.data_dir / "chain"
    bind_host = host or settings.devnet.host
    bind_port = port or settings.devnet.port
    seconds = block_time or settings.devnet.block_time

    async def main() -> None:
        async with DevnetChain(directory / "chain.sqlite3", block_time=seconds) as chain:
            console.print(f"devnet chain at block {await chain.get_current_block()} serving on "
                          f"http://{bind_host}:{bind_port} (block time {seconds} s, state in {directory})")
            await serve_app(create_chain_app(chain), host=bind_host, port=bind_port,
                            timeouts=ConnectionTimeouts.from_settings(settings.http))

    asyncio.run(main())
