import pytest

from tests.miner.conftest import METAGRAPH, SMALL_VALIDATOR, VALIDATOR
from veilnet.quotas import Quota, quota_for, quota_table, synthetic_budget, validator_stakes


def test_quota_is_floor_of_stake_share() -> None:
    table = quota_table(100, {"a": 1, "b": 2, "c": 0})
    assert table == {"a": Quota(33), "b": Quota(66), "c": Quota(0)}
    assert sum(q.total for q in table.values()) <= 100


def test_unknown_validator() -> None:
    assert quota_for(10, {"a": 1}, "a") == Quota(10)
    assert quota_for(10, {"a": 1}, "nobody") == Quota(0)
    assert quota_for(10, {}, "a") == Quota(0)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        quota_table(-1, {"a": 1})
    with pytest.raises(ValueError):
        synthetic_budget(Quota(1), 0, 0, synthetic_share=1.5)


def test_organic_traffic_uses_the_quota_first_and_synthetic_fills_the_rest() -> None:
    quota, share = Quota(total=10), 0.5  # the validator's own synthetic share: the miner knows of none
    assert synthetic_budget(quota, organic_used=0, synthetic_used=0, synthetic_share=share) == 5  # the share caps it
    assert synthetic_budget(quota, organic_used=7, synthetic_used=0, synthetic_share=share) == 3  # organic came first
    assert synthetic_budget(quota, organic_used=7, synthetic_used=2, synthetic_share=share) == 1
    assert synthetic_budget(quota, organic_used=12, synthetic_used=0, synthetic_share=share) == 0  # organic spent it
    assert synthetic_budget(quota, organic_used=0, synthetic_used=1, cap=3) == 2  # the validator's own cap
    assert synthetic_budget(quota, organic_used=0, synthetic_used=0) == 10  # share 1: all of what is left


def test_the_validator_plans_with_the_stakes_the_miner_enforces() -> None:
    stakes = validator_stakes(METAGRAPH.neurons)
    assert stakes == {VALIDATOR.ss58_address: 3_000, SMALL_VALIDATOR.ss58_address: 1_000}  # permits only
    assert quota_for(100, stakes, VALIDATOR.ss58_address).total == 75
    assert len(validator_stakes(METAGRAPH.neurons, min_stake=10)) == 3  # a miner's min_stake admits more
