"""``veilnet sim``: the adversarial market simulator (logic in :mod:`veilnet.sim.adversarial`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from veilnet.cli.common import console, print_wide, veilnet_errors
from veilnet.errors import ConfigError
from veilnet.sim.adversarial import (
    COPIER,
    MarketConfig,
    MarketOutcome,
    applicable,
    run_market,
    strategies_for,
    strategy_named,
)
from veilnet.sim.answers import TASKS

__all__ = ["sim"]



def _table(task: str, outcomes: list[MarketOutcome], epochs: int) -> Table:
    table = Table(title=f"{task}: share of miner emission per epoch", title_justify="left")
    table.add_column("strategy")
    table.add_column("miners")
    for epoch in range(1, epochs + 1):
        table.add_column(str(epoch), justify="right")
    table.add_column("fair", justify="right")
    for outcome in outcomes:
        for who, shares in outcome.shares.items():
            style = "green" if who == "honest" else "red"
            table.add_row(outcome.strategy, f"[{style}]{who}[/]", *(f"{s:.1%}" for s in shares),
                          f"{outcome.fair.get(who, 0.0):.1%}")
        if outcome.copier_ratio is not None:
            table.add_row(outcome.strategy, "[red]copier dividends / honest[/]", *([""] * (epochs - 1)),
                          f"{outcome.copier_ratio:.1%}", "")
    return table


def _plans(tasks: list[str], strategies: list[str]) -> dict[str, list[str]]:
    """Task -> strategies to run, every name checked before anything runs (ConfigError naming what is wrong)."""
    plans = {}
    for name in tasks:
        if name not in TASKS:
            raise ConfigError(f"unknown task {name!r}; the simulator covers {', '.join(TASKS)}")
        chosen = strategies_for(strategies, name)
        for cheat in chosen:
            if cheat == COPIER:
                continue
            if strategy_named(cheat).sybil == 1 and cheat not in (*applicable(name), "honest"):
                raise ConfigError(f"strategy {cheat!r} does not apply to task {name!r}; applicable: "
                                  f"{', '.join([*applicable(name), COPIER])}")
        plans[name] = chosen
    return plans


@veilnet_errors
def sim(
    epochs: Annotated[int, typer.Option(help="epochs (tempos) to run")] = 10,
    miners: Annotated[int, typer.Option(help="miner hotkeys")] = 10,
    cheaters: Annotated[float, typer.Option(help="share of the hotkeys run by the cheating strategy")] = 0.3,
    strategy: Annotated[list[str] | None, typer.Option(
        help="a cheating strategy (repeatable; default: every one applicable to the task): honest, empty, "
             "truncate, cache, substitute, inflate-usage, selective, capacity-liar, price-liar, sybil-K, "
             f"{COPIER}")] = None,
    task: Annotated[list[str] | None, typer.Option(help=f"task (repeatable): {', '.join(TASKS)}")] = None,
    seed: Annotated[int, typer.Option(help="random seed (runs are deterministic)")] = 0,
    png: Annotated[Path | None, typer.Option(help="write the plot of emission shares here (PNG)")] = None,
) -> None:
    """Run a market of honest and cheating miners through the real challenges, verifiers, scoring and epoch;
    print each strategy's share of miner emission per epoch."""
    MarketConfig(miners=miners, cheaters=cheaters, epochs=epochs, seed=seed)  # refuses bad figures at once
    plans = _plans(list(task or ["chat"]), strategy or [])
    outcomes: list[MarketOutcome] = []
    for name, chosen in plans.items():
        config = MarketConfig(task=name, miners=miners, cheaters=cheaters, epochs=epochs, seed=seed)
        runs = []
        for cheat in chosen:
            console.print(f"[dim]{name}: {cheat}...[/dim]")
            runs.append(run_market(config, cheat))
        print_wide(_table(name, runs, epochs))
        outcomes.extend(runs)
    if png is not None:
        from veilnet.sim.plot import plot_shares

        console.print(f"plot: {plot_shares(outcomes, png)}")
