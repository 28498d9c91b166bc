"""The validator: challenge miners, verify their answers, score them and set weights on chain."""

from veilnet.validator.service import ValidatorContext, challenge_miner, run_validator, set_weights_for

__all__ = ["ValidatorContext", "challenge_miner", "run_validator", "set_weights_for"]
