"""``veilnet new-task NAME``: scaffold a task package (see :mod:`veilnet.scaffold` and docs/tasks.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import ValidationError

from veilnet.cli.common import console, veilnet_errors
from veilnet.errors import ConfigError
from veilnet.scaffold import TaskSpec, load_spec, write_task
from veilnet.scaffold.spec import (
    FIELD_TYPES,
    VERIFICATIONS,
    Field,
    Verification,
    check_task_name,
    parse_fields,
)

__all__ = ["new_task"]

T = TypeVar("T")

_VERIFICATION_HELP = ("known_truth: the validator builds challenges from answers it knows; reference: it re-runs "
                      "a reference engine and wants the same answer; similarity: as reference, scored by closeness")


def _until_valid(ask: Callable[[], T]) -> T:
    """``ask()`` again until it returns (a ConfigError is shown and asked again)."""
    while True:
        try:
            return ask()
        except ConfigError as exc:
            console.print(f"[red]{exc.message}[/red]; again:")


def _fields(what: str, default: str) -> tuple[Field, ...]:
    text = str(typer.prompt(f"{what} (name:type, comma separated; types: {', '.join(FIELD_TYPES)})", default=default))
    fields = parse_fields(text)
    if not fields:
        raise ConfigError(f"{what.lower()} need at least one field")
    return fields


def _verification() -> Verification:
    answer = str(typer.prompt(f"How are answers verified ({', '.join(VERIFICATIONS)})? {_VERIFICATION_HELP}\n",
                              default="known_truth"))
    for choice in VERIFICATIONS:
        if answer == choice:
            return choice
    raise ConfigError(f"verification must be one of {', '.join(VERIFICATIONS)}")


def _ask(name: str) -> TaskSpec:
    description = str(typer.prompt("What does the task do (one line)", default=f"the {name} task"))
    inputs = _until_valid(lambda: _fields("Inputs", "text:string"))
    outputs = _until_valid(lambda: _fields("Outputs", "label:string"))
    verification = _until_valid(_verification)
    try:
        return TaskSpec(name=name, description=description, inputs=inputs, outputs=outputs, verification=verification)
    except ValidationError as exc:
        raise ConfigError(f"the task: {exc.errors()[0]['msg']}") from None


@veilnet_errors
def new_task(
    name: Annotated[str, typer.Argument(help="The task's name (lower case, a-z 0-9 -): its entry point and route.")],
    spec: Annotated[Path | None, typer.Option(
        "--spec", help="TOML or JSON file with the answers (description, inputs, outputs, verification).")] = None,
    directory: Annotated[Path | None, typer.Option(
        "--dir", help="Where to write the package (default: ./veilnet-task-NAME).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a directory that already holds files.")] = False,
) -> None:
    """Scaffold a task package: typed documents, challenge generator, verifier, miner handler, tests, README,
    and the entry point that plugs it into veilnet once installed."""
    check_task_name(name)
    task = load_spec(spec, name) if spec is not None else _ask(name)
    target = directory or Path.cwd() / task.distribution
    written = write_task(task, target, force=force)
    console.print(f"wrote {len(written)} files to {target}")
    console.print(f"next: cd {target} && pip install -e . && python -m pytest && veilnet devnet up --task {task.name}")
