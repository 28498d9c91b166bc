"""The validator: challenge miners, verify their answers, score them and set weights on chain."""

from veilnet.validator.service import (
    ROLES,
    ValidatorContext,
    run_challenger,
    run_scorer,
    run_validator,
    run_weights,
    set_weights_for,
)

__all__ = ["ROLES", "ValidatorContext", "run_challenger", "run_scorer", "run_validator", "run_weights",
           "set_weights_for"]
