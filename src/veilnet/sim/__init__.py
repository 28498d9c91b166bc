"""The market simulator's building blocks, all pure: a subnet model with the devnet chain's commit-reveal and
epoch rules over the exact epoch (``chain``), the multi-epoch driver (``driver``), miners' true performance
over time (``market``), validator strategies (``validators``) and what a run paid to whom (``metrics``).
``copying`` is the weight-copying study of docs/incentives.md. ``adversarial`` is the market of honest and
cheating miners that ``veilnet sim`` runs (through the real challenge generators and verifiers of ``answers``,
the real scoring and the exact epoch); ``plot`` draws its PNG."""

from veilnet.sim.adversarial import STRATEGIES, MarketConfig, MarketOutcome, MinerStrategy, run_market
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
    "STRATEGIES",
    "CopierValidator",
    "DriftingMarket",
    "HonestValidator",
    "MarketConfig",
    "MarketModel",
    "MarketOutcome",
    "MarketTrajectory",
    "MinerFairness",
    "MinerStrategy",
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
    "run_market",
    "sharpened",
    "simulate",
    "steady_market",
]
