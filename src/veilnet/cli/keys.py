"""`veilnet keys create|list|revoke|topup|budget`: the gateway's API keys (stored hashed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from veilnet.budgets import BudgetReset
from veilnet.cli.common import console, err_console, settings_from, veilnet_errors
from veilnet.settings import Settings

if TYPE_CHECKING:  # imported where used: every `veilnet` command would otherwise load SQLAlchemy and Alembic
    from veilnet.store.keys import ApiKey, KeyStore

__all__ = ["app"]

app = typer.Typer(help="Manage the gateway's API keys, their credit and budgets (in VEILNET_DATABASE__URL, else "
                       "the running devnet's database, else the default SQLite file).", no_args_is_help=True)

T = TypeVar("T")


def keys_database(settings: Settings) -> tuple[str, str]:
    """Where the keys live, and why there: the configured database (``VEILNET_DATABASE__URL``) when there is
    one, else the running devnet's (its gateway reads that one), else the default SQLite file."""
    from veilnet.devnet.runtime import running_devnet

    if settings.database.url is not None:
        return settings.database_url(), "VEILNET_DATABASE__URL"
    devnet = running_devnet(settings.devnet.data_dir)
    if devnet is not None:
        return devnet.database_url, f"the running devnet's, {devnet.data_dir}"
    return settings.database_url(), "the default; no devnet is running"


def _with_store(ctx: typer.Context, action: Callable[[KeyStore], Awaitable[T]]) -> T:
    from veilnet.store.keys import KeyStore
    from veilnet.store.sql import open_database

    url, why = keys_database(settings_from(ctx))
    err_console.print(f"[dim]keys in {_redacted(url)} ({why})[/]")

    async def main() -> T:
        async with open_database(url) as engine:
            return await action(KeyStore(engine))

    return asyncio.run(main())


def _redacted(url: str) -> str:
    """The URL without its password, to be shown."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ValueError:
        return "(unparseable database URL)"


@app.command("create")
@veilnet_errors
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "default",
    credit: Annotated[float, typer.Option("--credit", min=0, help="Credit in USD.")] = 10.0,
    budget: Annotated[float | None, typer.Option("--budget", help="Spend at most this many USD per period.")] = None,
    reset: Annotated[BudgetReset | None, typer.Option("--reset", help="The budget's period (UTC).")] = None,
) -> None:
    """Create a key; its secret is shown once."""
    secret, key = _with_store(ctx, lambda store: store.create(name, credit, budget_usd=budget, budget_reset=reset))
    console.print(f"key {key.id} ({name}), credit ${credit:.2f}{_budget_text(key)}")
    typer.echo(secret)


def _budget_text(key: ApiKey) -> str:
    return "" if key.budget_usd is None else f", budget ${key.budget_usd:.2f} {key.budget_reset}"


@app.command("list")
@veilnet_errors
def list_(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List keys with their credit and spend (never their secrets)."""
    keys = _with_store(ctx, lambda store: store.all_keys())
    rows = [{"id": k.id, "name": k.name, "prefix": k.prefix, "credit_usd": k.credit_usd, "spent_usd": k.spent_usd,
             "budget_usd": k.budget_usd, "budget_reset": k.budget_reset, "revoked": k.revoked} for k in keys]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for key in keys:
        console.print(f"{key.id:>4}  {key.prefix}…  {key.name:<20} ${key.spent_usd:.4f} of "
                      f"${key.credit_usd:.2f}{_budget_text(key)}{'  revoked' if key.revoked else ''}")


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


@app.command("budget")
@veilnet_errors
def budget(
    ctx: typer.Context,
    key_id: Annotated[int, typer.Argument(help="The key's id.")],
    amount: Annotated[float | None, typer.Argument(help="USD the key may spend per period.")] = None,
    reset: Annotated[BudgetReset | None, typer.Option("--reset", help="The budget's period (UTC).")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the key's budget.")] = False,
) -> None:
    """Set (or with --clear remove) a key's spending budget per day, week or month."""
    if clear:
        _with_store(ctx, lambda store: store.set_budget(key_id, None, None))
        console.print(f"key {key_id}: no budget")
        return
    _with_store(ctx, lambda store: store.set_budget(key_id, amount, reset))
    console.print(f"key {key_id}: budget ${amount or 0:.2f} {reset}")
