"""`veilnet devnet up|status|down|reset|add-miner|logs`: a whole inference subnet on this machine, kept between runs."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from veilnet.cli.common import console, err_console, fail, print_wide, settings_from, veilnet_errors
from veilnet.devnet.options import Backend

__all__ = ["app"]

app = typer.Typer(help="Run a whole local subnet: chain, Redis, miners, validators and the gateway.", no_args_is_help=True)

T = TypeVar("T")

DataDir = Annotated[
    Path | None, typer.Option("--data-dir", help="Where the devnet keeps its state (default ~/.veilnet/devnet).")
]
Model = Annotated[str | None, typer.Option(
    "--model", help="The miners' model (default SmolLM2-135M-Instruct; llamacpp serves catalog models).")]
BackendOption = Annotated[Backend | None, typer.Option(
    "--backend", help="llamacpp (the model in process, default) or openai (relay to --upstream-url).")]
UpstreamUrl = Annotated[str | None, typer.Option(
    "--upstream-url", help="OpenAI-compatible base URL the openai backend relays to, e.g. http://127.0.0.1:8000/v1.")]
ReadyTimeout = Annotated[float, typer.Option("--ready-timeout", min=1, help="Seconds each service gets to serve.")]
TaskOption = Annotated[list[str] | None, typer.Option(
    "--task", help="An installed task the miners serve (repeat for several; default: chat). Without chat the "
                   "miners run no language model.")]


def _data_dir(ctx: typer.Context, data_dir: Path | None) -> Path:
    settings = settings_from(ctx)
    if data_dir is not None:
        settings.devnet.data_dir = data_dir
    return settings.devnet.data_dir


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


def _task_lines(gateway_url: str, api_key: str, runtime: Any) -> str:
    """Where each task other than chat is served, and with which model."""
    from veilnet.tasks.registry import task_named

    lines = []
    for name in sorted({t for m in runtime.miners() for t in m.tasks if t not in ("chat", "embeddings")}):
        task = task_named(name)
        lines.append(f"[bold]{name}[/]  POST {gateway_url}{task.gateway_route}  model {task.default_model!r}")
    return "\n".join(lines)


def _run_until_terminated(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; SIGTERM (``devnet down`` from another shell, a service manager) cancels it like Ctrl-C,
    so whatever it started is stopped on the way out."""

    async def main() -> T:
        task = asyncio.ensure_future(coro)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await task

    return asyncio.run(main())


@contextlib.contextmanager
def _progress(first: str) -> Iterator[Callable[[str], None]]:
    """Report progress on stderr: a spinner and timed lines on a terminal, plain timed lines when redirected
    (Rich would break them at 80 columns or pad them to the width)."""
    if not err_console.is_terminal:
        yield lambda message: err_console.print(f"[{time.strftime('%H:%M:%S')}] {message}", highlight=False,
                                                markup=False)
        return
    from rich.status import Status

    with Status(first, console=err_console) as status:

        def progress(message: str) -> None:
            status.update(message)
            err_console.log(message)

        yield progress


@app.command("up")
@veilnet_errors
def up(
    ctx: typer.Context,
    miners: Annotated[int | None, typer.Option("--miners", min=1, max=64, help="Number of miners (default 3).")] = None,
    validators: Annotated[int | None, typer.Option(
        "--validators", min=1, max=16, help="Number of validators (default 1).")] = None,
    model: Model = None,
    backend: BackendOption = None,
    upstream_url: UpstreamUrl = None,
    block_time: Annotated[float | None, typer.Option("--block-time", min=0.05, help="Seconds per block (default 0.5).")] = None,
    tempo: Annotated[int | None, typer.Option("--tempo", min=2, help="Blocks per epoch (default 40).")] = None,
    redis_url: Annotated[str | None, typer.Option("--redis-url", help="Use this Redis instead of the bundled one.")] = None,
    data_dir: DataDir = None,
    detach: Annotated[bool, typer.Option("--detach", help="Return once the subnet serves; leave it running.")] = False,
    base_port: Annotated[int | None, typer.Option("--base-port", help="First port to use (default: free ports).")] = None,
    ready_timeout: ReadyTimeout = 180.0,
    task: TaskOption = None,
) -> None:
    """Start the devnet: chain, Redis, wallets, subnet, miners, validators and the gateway. A devnet recorded in
    the data directory resumes as it was: same subnet, stakes, ports, gateway URL and API key."""
    from veilnet.devnet.options import DevnetOptions
    from veilnet.devnet.processes import current_process
    from veilnet.devnet.up import devnet_up

    settings = settings_from(ctx)
    _data_dir(ctx, data_dir)
    options = DevnetOptions(
        miners=miners, validators=validators, tempo=tempo, model=model, backend=backend, upstream_url=upstream_url,
        block_time=block_time, redis_url=redis_url, base_port=base_port, ready_timeout=ready_timeout,
        tasks=tuple(task) if task else None,
    )
    supervisor = None if detach else current_process()
    try:
        with _progress("starting the devnet") as progress:
            runtime = _run_until_terminated(devnet_up(settings, options, progress, supervisor=supervisor))
    except (KeyboardInterrupt, asyncio.CancelledError):
        raise fail("interrupted; the services it had started are stopped", code=130) from None

    miner_model = next((n.model for n in runtime.miners() if n.model and "chat" in n.tasks), None)
    if runtime.gateway_url and runtime.api_key:
        if miner_model is not None:
            console.print(_snippets(runtime.gateway_url, runtime.api_key, miner_model), soft_wrap=True)
        console.print(_task_lines(runtime.gateway_url, runtime.api_key, runtime), soft_wrap=True)
    console.print(f"state: {runtime.data_dir}/devnet.json   logs: `veilnet devnet logs` ({runtime.data_dir}/logs/)",
                  soft_wrap=True)
    if detach:
        console.print("[green]devnet is running[/] — `veilnet devnet status` to watch, `veilnet devnet down` to stop")
        return
    console.print("[dim]Ctrl-C (or `veilnet devnet down`) stops every process[/]")
    started = list(runtime.services)
    try:
        _watch(Path(runtime.data_dir), instance=runtime.instance)
    finally:
        from veilnet.devnet.up import stop_own_services

        stopped = stop_own_services(Path(runtime.data_dir), runtime.instance, started)
        console.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


def _watch(data_dir: Path, *, instance: str | None = None, interval: float = 2.0) -> None:
    """Show live status until Ctrl-C or SIGTERM (or, for a foreground ``up``, until another ``up`` takes the
    devnet over). On a terminal the status redraws in place; redirected, a full table is printed whenever the
    epoch or a service's state changes."""
    from veilnet.devnet.runtime import load_runtime

    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        if load_runtime(data_dir) is None:
            raise fail(f"no devnet recorded in {data_dir}")
        shows = _LiveStatus() if console.is_terminal else _PrintedStatus()
        with shows:
            while not stop:
                runtime = load_runtime(data_dir)
                if runtime is None or (instance is not None and runtime.instance != instance):
                    console.print("the devnet was taken over by another `veilnet devnet up`; this one ends")
                    return
                shows.update(runtime)
                deadline = time.monotonic() + interval
                while not stop and time.monotonic() < deadline:
                    time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)


class _LiveStatus:
    """The status table redrawn in place on a terminal."""

    def __enter__(self) -> _LiveStatus:
        from rich.live import Live

        self._live = Live(console=console, refresh_per_second=2)
        self._live.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._live.__exit__(None, None, None)

    def update(self, runtime: Any) -> None:
        from veilnet.devnet.status import collect_status, status_table

        self._live.update(status_table(asyncio.run(collect_status(runtime))))


class _PrintedStatus:
    """The status table printed in full (no cursor movement, no width limit) when it changes in substance."""

    def __init__(self) -> None:
        self._last: tuple[object, ...] | None = None

    def __enter__(self) -> _PrintedStatus:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def update(self, runtime: Any) -> None:
        from veilnet.devnet.status import collect_status, status_table

        status = asyncio.run(collect_status(runtime))
        key = (status.next_epoch_block, tuple(s.alive for s in status.services), status.chain_error)
        if key != self._last:
            self._last = key
            print_wide(status_table(status))


@app.command("status")
@veilnet_errors
def status(
    ctx: typer.Context,
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (gateway URL, API key, chain URL, neurons).")] = False,
    watch: Annotated[bool, typer.Option("--watch", help="Keep refreshing until Ctrl-C.")] = False,
) -> None:
    """Show the devnet: block, epoch, each neuron's stake, score, incentive and dividends, its services, where
    API keys live and llama.cpp's threads per engine."""
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
        typer.echo(result.model_dump_json(indent=2))
    else:
        print_wide(status_table(result))


@app.command("down")
@veilnet_errors
def down(ctx: typer.Context, data_dir: DataDir = None) -> None:
    """Stop every process of the devnet, a foreground `devnet up` included; its state stays for the next `up`."""
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


@app.command("add-miner")
@veilnet_errors
def add_miner(
    ctx: typer.Context,
    model: Model = None,
    backend: BackendOption = None,
    upstream_url: UpstreamUrl = None,
    data_dir: DataDir = None,
    ready_timeout: ReadyTimeout = 180.0,
    task: TaskOption = None,
) -> None:
    """Register one more miner on the running devnet and start it; later `up`s start it too."""
    from veilnet.devnet.options import DevnetOptions
    from veilnet.devnet.up import add_miner as add

    settings = settings_from(ctx)
    _data_dir(ctx, data_dir)
    spec = DevnetOptions(model=model, backend=backend, upstream_url=upstream_url,
                         tasks=tuple(task) if task else None).miner_spec()
    with _progress("adding a miner") as progress:
        neuron = asyncio.run(add(settings, spec, progress, ready_timeout=ready_timeout))
    serves = ", ".join(f"{neuron.model} ({neuron.backend})" if t == "chat" else t for t in neuron.tasks)
    console.print(f"{neuron.name} serves {serves} on {neuron.axon_url}, hotkey {neuron.hotkey}")


@app.command("logs")
@veilnet_errors
def logs(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Argument(help="One service (chain, redis, gateway, miner-0, ...); default all.")] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="Lines to show from the end of each log.")] = 20,
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines until Ctrl-C.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Print the end of the devnet's service logs (each line prefixed with its service when showing several)."""
    from veilnet.devnet.logs import follow, log_files, tail

    files = log_files(_data_dir(ctx, data_dir), service)
    prefix = len(files) > 1
    width = max(len(name) for name in files)

    def emit(name: str, line: str) -> None:
        typer.echo(f"{name:<{width}} | {line}" if prefix else line)

    for name, path in files.items():
        for line in tail(path, lines):
            emit(name, line)
    if follow_:
        try:
            follow(files, emit, stop=lambda: False)
        except KeyboardInterrupt:
            pass
