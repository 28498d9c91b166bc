"""`veilnet wallet create|list|show`: wallets in the bittensor layout (btcli-compatible)."""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

from veilnet.cli.common import console, err_console, fail, settings_from, veilnet_errors

__all__ = ["app"]

app = typer.Typer(help="Create and inspect wallets (the bittensor layout, shared with btcli).", no_args_is_help=True)

Name = Annotated[str | None, typer.Option("--name", "-n", help="Wallet name (default: settings wallet.name).")]
Hotkey = Annotated[str | None, typer.Option("--hotkey", "-k", help="Hotkey name (default: settings wallet.hotkey).")]


@app.command("create")
@veilnet_errors
def create(
    ctx: typer.Context,
    name: Name = None,
    hotkey: Hotkey = None,
    no_password: Annotated[bool, typer.Option("--no-password", help="Store the coldkey unencrypted (dev only).")] = False,
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Read the coldkey password from this environment variable.")
    ] = None,
    words: Annotated[int, typer.Option("--words", help="Mnemonic length: 12, 15, 18, 21 or 24.")] = 12,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing wallet of that name.")] = False,
) -> None:
    """Create a coldkey and a hotkey; prints their addresses and mnemonics (write them down)."""
    from veilnet.wallet import create_wallet

    settings = settings_from(ctx).wallet
    password: str | None
    if no_password:
        password = None
    elif password_env is not None:
        password = os.environ.get(password_env)
        if not password:
            raise fail(f"environment variable {password_env} is empty or not set")
    else:
        password = typer.prompt("coldkey password", hide_input=True, confirmation_prompt=True)
    created = create_wallet(
        settings.path, name or settings.name, hotkey or settings.hotkey, password=password, overwrite=overwrite,
        n_words=words,
    )
    wallet = created.wallet
    console.print(f"wallet [bold]{wallet.name}[/] in {wallet.path}")
    console.print(f"  coldkey  {wallet.coldkeypub_ss58}")
    console.print(f"  hotkey   {wallet.hotkey_name}: {wallet.hotkey.ss58_address}")
    err_console.print("[yellow]Write down these mnemonics; anyone with them controls the keys.[/]")
    err_console.print(f"  coldkey mnemonic: {created.coldkey_mnemonic}")
    err_console.print(f"  hotkey mnemonic:  {created.hotkey_mnemonic}")


@app.command("list")
@veilnet_errors
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List wallets and their hotkeys."""
    from veilnet.wallet import list_wallets

    path = settings_from(ctx).wallet.path
    wallets = list_wallets(path)
    if as_json:
        typer.echo(json.dumps([{"name": w.name, "coldkey": w.coldkeypub_ss58, "hotkeys": w.hotkeys} for w in wallets]))
        return
    if not wallets:
        console.print(f"no wallets in {path}")
        return
    for info in wallets:
        console.print(f"[bold]{info.name}[/]  coldkey {info.coldkeypub_ss58 or '?'}")
        for hotkey_name, address in info.hotkeys.items():
            console.print(f"  └─ {hotkey_name}  {address or '?'}")


@app.command("show")
@veilnet_errors
def show(
    ctx: typer.Context,
    name: Name = None,
    hotkey: Hotkey = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show a wallet's coldkey and hotkey addresses."""
    from veilnet.settings import WalletSettings
    from veilnet.wallet import load_wallet

    settings = settings_from(ctx).wallet
    wallet = load_wallet(
        WalletSettings(name=name or settings.name, hotkey=hotkey or settings.hotkey, path=settings.path)
    )
    data = {
        "name": wallet.name,
        "path": str(wallet.path),
        "coldkey": wallet.coldkeypub_ss58,
        "hotkey_name": wallet.hotkey_name,
        "hotkey": wallet.hotkey.ss58_address,
    }
    if as_json:
        typer.echo(json.dumps(data))
    else:
        for key, value in data.items():
            console.print(f"{key:<12} {value}")
