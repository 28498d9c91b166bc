"""What every CLI module shares: the settings loader and turning veilnet errors into clean exits."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from veilnet.errors import VeilnetError
from veilnet.settings import Settings, load_settings

__all__ = [
    "CliState",
    "HotkeyOption",
    "NetuidOption",
    "NetworkOption",
    "WalletOption",
    "apply_service_options",
    "ask_coldkey_password",
    "console",
    "err_console",
    "fail",
    "print_wide",
    "run_async",
    "settings_from",
    "veilnet_errors",
]

console = Console(soft_wrap=True)  # lines are not broken at the console's width (tables: `print_wide`)
err_console = Console(stderr=True, log_path=False, soft_wrap=True)

# Output that goes to a file or a pipe has no width: Rich would fit tables into 80 columns, cutting hotkeys and
# URLs. It gets the width its content needs instead (up to this).
REDIRECTED_WIDTH = 1000

WalletOption = Annotated[str | None, typer.Option("--wallet", help="Wallet name (default: env VEILNET_WALLET__NAME).")]
HotkeyOption = Annotated[str | None, typer.Option("--hotkey", help="Hotkey name (default: env VEILNET_WALLET__HOTKEY).")]
NetuidOption = Annotated[int | None, typer.Option("--netuid", min=0, help="Subnet (default: env VEILNET_CHAIN__NETUID).")]
NetworkOption = Annotated[str | None, typer.Option(
    "--network", help="devnet, finney, test, local or a ws(s):// URL (default: env VEILNET_CHAIN__NETWORK).")]

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class CliState:
    config_file: Path | None = None
    _settings: Settings | None = field(default=None, repr=False)


def settings_from(ctx: typer.Context, **overrides: Any) -> Settings:
    """The settings for this invocation (built once; ``overrides`` apply to the first build only)."""
    state = ctx.find_root().obj
    if not isinstance(state, CliState):
        state = CliState()
    if state._settings is None:
        state._settings = load_settings(state.config_file, **overrides)
    return state._settings


def apply_service_options(
    settings: Settings, *, wallet: str | None, hotkey: str | None, netuid: int | None, network: str | None
) -> None:
    """The service commands' ``--wallet``, ``--hotkey``, ``--netuid`` and ``--network``: a flag given wins over
    the environment and the config file."""
    if wallet is not None:
        settings.wallet.name = wallet
    if hotkey is not None:
        settings.wallet.hotkey = hotkey
    if netuid is not None:
        settings.chain.netuid = netuid
    if network is not None:
        settings.chain.network = network


def print_wide(renderable: object) -> None:
    """Print on stdout; redirected output is as wide as its content (see ``REDIRECTED_WIDTH``)."""
    if console.is_terminal:
        console.print(renderable)
    else:  # Console.print(width=...) only narrows: a console of that width widens
        Console(file=console.file, width=REDIRECTED_WIDTH, no_color=console.no_color).print(renderable)


def ask_coldkey_password(settings: Settings) -> None:
    """Registration and staking sign with the coldkey: ask for its password on a terminal when it is
    encrypted and none was given (VEILNET_WALLET__COLDKEY_PASSWORD serves automation)."""
    import sys

    from pydantic import SecretStr

    from veilnet.wallet import load_wallet

    if settings.wallet.coldkey_password is not None or not sys.stdin.isatty():
        return
    if load_wallet(settings.wallet).coldkey_is_encrypted():
        password = typer.prompt(f"password for the coldkey of wallet {settings.wallet.name!r}", hide_input=True)
        settings.wallet.coldkey_password = SecretStr(password)


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def veilnet_errors(func: Callable[P, T]) -> Callable[P, T]:
    """Show a veilnet error as one clear line and a non-zero exit instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return func(*args, **kwargs)
        except VeilnetError as exc:
            raise fail(f"{exc.message} [{exc.code}]") from None

    return wrapper


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)
