"""`veilnet chain epoch --input scenario.json`: one Yuma epoch from a JSON scenario, printed as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from veilnet.cli.common import fail, veilnet_errors

__all__ = ["epoch_command"]


@veilnet_errors
def epoch_command(
    input: Annotated[str, typer.Option("--input", "-i", help="Scenario JSON file, or '-' for stdin.")],
) -> None:
    """Run one epoch of subtensor's Yuma Consensus on a scenario and print the result as JSON."""
    from veilnet.chain.epoch import run_epoch
    from veilnet.chain.scenario import output_to_json, parse_scenario

    if input == "-":
        text = sys.stdin.read()
    else:
        path = Path(input)
        try:
            text = path.read_text()
        except OSError as exc:
            raise fail(f"cannot read scenario {path}: {exc.strerror}") from None
    typer.echo(json.dumps(output_to_json(run_epoch(parse_scenario(text)))))
