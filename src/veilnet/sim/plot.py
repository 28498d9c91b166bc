"""The simulator's PNG: per strategy run, the honest and the cheating miners' share of miner emission per
epoch (matplotlib, drawn off-screen)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from veilnet.sim.adversarial import MarketOutcome

__all__ = ["plot_shares"]


def plot_shares(outcomes: Sequence[MarketOutcome], path: Path) -> Path:
    """One panel per run: honest share (green) and cheater share (red) of miner emission by epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(4, max(1, len(outcomes)))
    rows = (len(outcomes) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.8 * rows), squeeze=False, sharey=True)
    for panel, outcome in zip(axes.flat, outcomes, strict=False):
        epochs = range(1, outcome.config.epochs + 1)
        panel.plot(epochs, outcome.shares["honest"], color="tab:green", label="honest")
        if outcome.strategy in outcome.shares and outcome.strategy != "honest":
            panel.plot(epochs, outcome.shares[outcome.strategy], color="tab:red", label=outcome.strategy)
        panel.axhline(0.95, color="grey", linewidth=0.6, linestyle=":")
        panel.set_title(f"{outcome.config.task}: {outcome.strategy}", fontsize=9)
        panel.set_ylim(-0.02, 1.02)
        panel.set_xlabel("epoch", fontsize=8)
        panel.legend(fontsize=7, loc="center right")
    for panel in list(axes.flat)[len(outcomes):]:
        panel.set_visible(False)
    axes[0][0].set_ylabel("share of miner emission")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
