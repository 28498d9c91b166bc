"""`veilnet keys create|list|revoke|topup`: the gateway's API keys (stored hashed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer

from veilnet.cli.common import console, settings_from, veilnet_errors
from veilnet.store.keys import KeyStore

__all__ = ["app"]

app = typer.Typer(help="Manage the gateway's API keys and credit.", no_args_is_help=True)

T = TypeVar("T")


def _with_store(ctx: typer.Context, action: Callable[[KeyStore], Awaitable[T]]) -> T:
    from veilnet.store.sql import open_database

    url = settings_from(ctx).database_url()

    async def main() -> T:
        async with open_database(url) as engine:
            return await action(KeyStore(engine))

    return asyncio.run(main())


@app.command("create")
@veilnet_errors
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "default",
    credit: Annotated[float, typer.Option("--credit", min=0, help="Credit in USD.")] = 10.0,
) -> None:
    """Create a key; its secret is shown once."""
    secret, key = _with_store(ctx, lambda store: store.create(name, credit))
    console.print(f"key {key.id} ({name}), credit ${credit:.2f}")
    typer.echo(secret)


@app.command("list")
@veilnet_errors
def list_(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List keys with their credit and spend (never their secrets)."""
    keys = _with_store(ctx, lambda store: store.all_keys())
    rows = [{"id": k.id, "name": k.name, "prefix": k.prefix, "credit_usd": k.credit_usd, "spent_usd": k.spent_usd,
             "revoked": k.revoked} for k in keys]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        console.print(f"{row['id']:>4}  {row['prefix']}…  {row['name']:<20} ${row['spent_usd']:.4f} of "
                      f"${row['credit_usd']:.2f}{'  revoked' if row['revoked'] else ''}")


@app.command("revoke")
@veilnet_errors
def revoke(ctx: typer.Context, key_id: Annotated[int, typer.Argument(help="The key's id.")]) -> None:
    """Revoke a key."""
    _with_store(ctx, lambda store: store.revoke(key_id))
    console.print(f"key {key_id} revoked")


@app.command("topup")
@veilnet_errors
def topup(
    ctx: typer.Context,
    key_id: Annotated[int, typer.Argument(help="The key's id.")],
    amount: Annotated[float, typer.Argument(help="USD to add.")],
) -> None:
    """Add credit to a key."""
    _with_store(ctx, lambda store: store.topup(key_id, amount))
    console.print(f"key {key_id}: +${amount:.2f}")
