import pytest

from veilnet.quotas import Quota, quota_for, quota_table


def test_quota_is_floor_of_stake_share() -> None:
    table = quota_table(100, {"a": 1, "b": 2, "c": 0})
    assert table == {"a": Quota(33, 33), "b": Quota(66, 66), "c": Quota(0, 0)}
    assert sum(q.total for q in table.values()) <= 100


def test_synthetic_share_and_unknown_validator() -> None:
    assert quota_for(10, {"a": 1}, "a", synthetic_share=0.25) == Quota(10, 2)
    assert quota_for(10, {"a": 1}, "nobody") == Quota(0, 0)
    assert quota_for(10, {}, "a") == Quota(0, 0)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        quota_table(-1, {"a": 1})
    with pytest.raises(ValueError):
        quota_table(1, {"a": 1}, synthetic_share=1.5)
