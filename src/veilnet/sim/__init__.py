"""The market simulator's building blocks, all pure: a subnet model with the devnet chain's commit-reveal and
epoch rules over the exact epoch (``chain``), the multi-epoch driver (``driver``), miners' true performance
over time (``market``), validator strategies (``validators``) and what a run paid to whom (``metrics``).
``copying`` is the weight-copying study of docs/incentives.md."""

from veilnet.sim.chain import SubnetModel, SubnetParams
from veilnet.sim.driver import SimResult, ValidatorSpec, simulate
from veilnet.sim.market import DriftingMarket, MarketModel, MarketTrajectory, steady_market
from veilnet.sim.metrics import (
    MinerFairness,
    dividend_ratio,
    dividends_per_stake,
    incentive_overlap,
    miner_fairness,
)
from veilnet.sim.validators import (
    CopierValidator,
    HonestValidator,
    PublicChain,
    ScoresToWeights,
    Strategy,
    ValidatorView,
    sharpened,
)

__all__ = [
    "CopierValidator",
    "DriftingMarket",
    "HonestValidator",
    "MarketModel",
    "MarketTrajectory",
    "MinerFairness",
    "PublicChain",
    "ScoresToWeights",
    "SimResult",
    "Strategy",
    "SubnetModel",
    "SubnetParams",
    "ValidatorSpec",
    "ValidatorView",
    "dividend_ratio",
    "dividends_per_stake",
    "incentive_overlap",
    "miner_fairness",
    "sharpened",
    "simulate",
    "steady_market",
]
