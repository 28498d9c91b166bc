"""The simulator's subnet model: commit-reveal timing, permits, expiry and parameter checks."""

from __future__ import annotations

import pytest

from veilnet.chain.types import RAO_PER_TAO
from veilnet.errors import ConfigError, InvalidRequest
from veilnet.sim.chain import SubnetModel, SubnetParams


def _subnet(**overrides: object) -> tuple[SubnetModel, int, int]:
    params = SubnetParams(tempo=10, weights_rate_limit=0, restake=False, **overrides)  # type: ignore[arg-type]
    subnet = SubnetModel(params)
    validator, miner = subnet.register(), subnet.register()
    subnet.add_stake(validator, 100 * RAO_PER_TAO)
    return subnet, validator, miner


def test_a_commit_is_revealed_only_in_its_reveal_epoch_and_then_public() -> None:
    subnet, validator, miner = _subnet(reveal_period=2)
    subnet.advance_to(subnet.next_epoch_block())  # the first epoch hands out the permit
    assert subnet.has_permit(validator)
    subnet.commit(validator, [(miner, 65_535)])
    committed_in = subnet.params.epoch_index(subnet.block)
    revealed_at = None
    while revealed_at is None:
        subnet.advance_to(subnet.block + 1)
        if subnet.reveal_due(validator):
            revealed_at = subnet.params.epoch_index(subnet.block)
        else:
            assert subnet.weights(validator) == []  # hidden until then
    assert revealed_at == committed_in + 2
    assert subnet.weights(validator) == [(miner, 65_535)]
    out = subnet.advance_to(subnet.next_epoch_block())[-1]
    assert out.incentive[miner] == 65_535


def test_an_unrevealed_commit_expires() -> None:
    subnet, validator, miner = _subnet(reveal_period=1)
    subnet.advance_to(subnet.next_epoch_block())
    subnet.commit(validator, [(miner, 1_000)])
    committed_in = subnet.params.epoch_index(subnet.block)
    while subnet.params.epoch_index(subnet.block) <= committed_in + 1:
        subnet.advance_to(subnet.block + 1)
    assert subnet.reveal_due(validator) == 0
    assert subnet.weights(validator) == []


def test_reveal_without_a_permit_fails_and_keeps_the_commit() -> None:
    subnet, validator, miner = _subnet(reveal_period=1)
    subnet.commit(validator, [(miner, 1_000)])  # before any epoch: no permit yet
    committed_in = subnet.params.epoch_index(subnet.block)
    while subnet.params.epoch_index(subnet.block) < committed_in + 1:
        subnet.advance_to(subnet.block + 1)
    assert not subnet.has_permit(validator)
    assert subnet.reveal_due(validator) == 0 and subnet.weights(validator) == []


def test_set_weights_and_commit_follow_the_mode() -> None:
    subnet, validator, miner = _subnet(commit_reveal=False)
    subnet.advance_to(subnet.next_epoch_block())
    assert subnet.set_weights(validator, [(miner, 7)])
    assert subnet.weights(validator) == [(miner, 65_535)]  # stored max-upscaled, as the chain does
    with pytest.raises(InvalidRequest, match="commit-reveal is off"):
        subnet.commit(validator, [(miner, 7)])
    on, validator_on, miner_on = _subnet()
    with pytest.raises(InvalidRequest, match="commit-reveal is on"):
        on.set_weights(validator_on, [(miner_on, 7)])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"tempo": 0}, "tempo must be at least 1"), ({"tempo": 50}, "shorter than weights_rate_limit"),
     ({"reveal_period": 0}, "reveal_period must be"), ({"reveal_period": 10}, "reveal_period must be")],
)
def test_unusable_parameters_are_refused(overrides: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SubnetParams(**overrides)  # type: ignore[arg-type]
