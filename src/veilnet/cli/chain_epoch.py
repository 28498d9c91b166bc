"""`veilnet chain epoch --input scenario.json`: one Yuma epoch from a JSON scenario, printed as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["epoch_command"]


def epoch_command(
    input: Annotated[Path, typer.Option("--input", "-i", help="Scenario JSON file ('-' for stdin).")],
) -> None:
    """Run one epoch from a scenario and print the result as JSON."""
    raise typer.Exit(1)
