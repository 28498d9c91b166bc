"""`veilnet devnet up|status|down|reset`: a whole inference subnet on this machine."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from veilnet.cli.common import console, err_console, fail, settings_from, veilnet_errors

__all__ = ["app"]

app = typer.Typer(help="Run a whole local subnet: chain, Redis, miners, validators and the gateway.", no_args_is_help=True)

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the devnet keeps its state (default ~/.veilnet/devnet).")
]


def _data_dir(ctx: typer.Context, data_dir: Path | None) -> Path:
    return data_dir if data_dir is not None else settings_from(ctx).devnet.data_dir


def _snippets(gateway_url: str, api_key: str, model: str) -> str:
    return f"""[bold]Gateway[/]  {gateway_url}/v1
[bold]API key[/]  {api_key}

[bold]curl[/]
  curl {gateway_url}/v1/chat/completions \\
    -H "Authorization: Bearer {api_key}" -H "Content-Type: application/json" \\
    -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "Say hello"}}]}}'

[bold]openai (Python)[/]
  from openai import OpenAI
  client = OpenAI(base_url="{gateway_url}/v1", api_key="{api_key}")
  print(client.chat.completions.create(model="{model}",
        messages=[{{"role": "user", "content": "Say hello"}}]).choices[0].message.content)
"""


@app.command("up")
@veilnet_errors
def up(
    ctx: typer.Context,
    miners: Annotated[int, typer.Option("--miners", min=1, max=64, help="Number of miners.")] = 3,
    validators: Annotated[int, typer.Option("--validators", min=1, max=16, help="Number of validators.")] = 1,
    block_time: Annotated[float, typer.Option("--block-time", min=0.05, help="Seconds per block.")] = 0.5,
    tempo: Annotated[int, typer.Option("--tempo", min=2, help="Blocks per epoch.")] = 40,
    redis_url: Annotated[str | None, typer.Option("--redis-url", help="Use this Redis instead of the bundled one.")] = None,
    data_dir: DataDir = None,
    detach: Annotated[bool, typer.Option("--detach", help="Return once the subnet serves; leave it running.")] = False,
    base_port: Annotated[int | None, typer.Option("--base-port", help="First port to use (default: free ports).")] = None,
) -> None:
    """Start chain, Redis, wallets, subnet, miners on SmolLM2, validators and the gateway."""
    from rich.status import Status

    from veilnet.devnet.up import DevnetOptions, devnet_down, devnet_up

    settings = settings_from(ctx)
    if data_dir is not None:
        settings.devnet.data_dir = data_dir
    options = DevnetOptions(
        miners=miners, validators=validators, block_time=block_time, tempo=tempo, redis_url=redis_url,
        base_port=base_port,
    )
    with Status("starting the devnet", console=err_console) as status:

        def progress(message: str) -> None:
            status.update(message)
            err_console.log(message)

        runtime = asyncio.run(devnet_up(settings, options, progress))

    model = options.model
    if runtime.gateway_url and runtime.api_key:
        console.print(_snippets(runtime.gateway_url, runtime.api_key, model), soft_wrap=True)
    console.print(f"state: {runtime.data_dir}/devnet.json   logs: {runtime.data_dir}/logs/")
    if detach:
        console.print("[green]devnet is running[/] — `veilnet devnet status` to watch, `veilnet devnet down` to stop")
        return
    console.print("[dim]Ctrl-C stops every process[/]")
    try:
        _watch(Path(runtime.data_dir))
    finally:
        stopped = devnet_down(Path(runtime.data_dir))
        console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


def _watch(data_dir: Path, interval: float = 2.0) -> None:
    """Show live status until Ctrl-C (SIGINT) or SIGTERM."""
    from rich.live import Live

    from veilnet.devnet.runtime import load_runtime
    from veilnet.devnet.status import collect_status, status_table

    runtime = load_runtime(data_dir)
    if runtime is None:
        raise fail(f"no devnet recorded in {data_dir}")
    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        with Live(console=console, refresh_per_second=2) as live:
            while not stop:
                live.update(status_table(asyncio.run(collect_status(runtime))))
                deadline = time.monotonic() + interval
                while not stop and time.monotonic() < deadline:
                    time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command("status")
@veilnet_errors
def status(
    ctx: typer.Context,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (gateway URL, API key, chain URL, neurons).")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Keep refreshing until Ctrl-C.")] = False,
) -> None:
    """Show the running devnet: block, epoch, each neuron's stake, incentive and dividends."""
    from veilnet.devnet.runtime import load_runtime
    from veilnet.devnet.status import collect_status, status_table

    directory = _data_dir(ctx, data_dir)
    runtime = load_runtime(directory)
    if runtime is None:
        raise fail(f"no devnet recorded in {directory}; start one with `veilnet devnet up`")
    if watch:
        _watch(directory)
        return
    result = asyncio.run(collect_status(runtime))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        console.print(status_table(result))


@app.command("down")
@veilnet_errors
def down(ctx: typer.Context, data_dir: DataDir = None) -> None:
    """Stop every process of the devnet; its state stays for the next `up`."""
    from veilnet.devnet.up import devnet_down

    stopped = devnet_down(_data_dir(ctx, data_dir))
    console.print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")


@app.command("reset")
@veilnet_errors
def reset(
    ctx: typer.Context,
    data_dir: DataDir = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Stop the devnet and delete its state (chain, wallets, Redis data, database)."""
    from veilnet.devnet.up import devnet_reset

    directory = _data_dir(ctx, data_dir)
    if not yes and not typer.confirm(f"delete {directory} and everything in it?"):
        raise typer.Exit(1)
    devnet_reset(directory)
    console.print(f"reset: {directory} removed")
