"""Typed values read from and written to a chain. Plain frozen dataclasses; no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "RAO_PER_TAO",
    "U16_MAX",
    "AxonInfo",
    "Metagraph",
    "NeuronInfo",
    "SubnetHyperparameters",
]

RAO_PER_TAO = 1_000_000_000
U16_MAX = 65_535


@dataclass(frozen=True, slots=True)
class AxonInfo:
    """Where a neuron serves. ``ip`` is the textual address; ``ip_type`` 4 or 6; protocol 0=TCP 4=HTTP."""

    ip: str
    port: int
    ip_type: int = 4
    protocol: int = 4
    version: int = 0
    block: int = 0

    @property
    def is_served(self) -> bool:
        return self.port != 0 and self.ip not in ("", "0.0.0.0")

    @property
    def url(self) -> str:
        host = f"[{self.ip}]" if self.ip_type == 6 else self.ip
        return f"http://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class NeuronInfo:
    """One uid of a subnet. u16 quantities are kept as stored on chain (0..65535); see the float helpers."""

    uid: int
    hotkey: str
    coldkey: str
    stake: int  # rao (alpha on the subnet)
    axon: AxonInfo | None
    validator_permit: bool
    incentive: int
    dividends: int
    emission: int  # rao, last epoch
    consensus: int
    validator_trust: int
    last_update: int
    block_at_registration: int
    active: bool
    pruning_score: int = 0

    @property
    def incentive_f(self) -> float:
        return self.incentive / U16_MAX

    @property
    def dividends_f(self) -> float:
        return self.dividends / U16_MAX

    @property
    def consensus_f(self) -> float:
        return self.consensus / U16_MAX

    @property
    def validator_trust_f(self) -> float:
        return self.validator_trust / U16_MAX


@dataclass(frozen=True, slots=True)
class Metagraph:
    """A subnet's neurons at one block."""

    netuid: int
    block: int
    neurons: tuple[NeuronInfo, ...]
    owner_hotkey: str | None = None
    owner_coldkey: str | None = None

    @property
    def n(self) -> int:
        return len(self.neurons)

    def by_hotkey(self, hotkey: str) -> NeuronInfo | None:
        for neuron in self.neurons:
            if neuron.hotkey == hotkey:
                return neuron
        return None

    def uid_of(self, hotkey: str) -> int | None:
        neuron = self.by_hotkey(hotkey)
        return None if neuron is None else neuron.uid

    @property
    def hotkeys(self) -> list[str]:
        return [neuron.hotkey for neuron in self.neurons]

    @property
    def stakes(self) -> list[int]:
        return [neuron.stake for neuron in self.neurons]

    @property
    def validators(self) -> list[NeuronInfo]:
        return [neuron for neuron in self.neurons if neuron.validator_permit]


@dataclass(frozen=True, slots=True)
class SubnetHyperparameters:
    """A subnet's settings, named as Subtensor names them. Defaults are Subtensor's for a new subnet."""

    netuid: int
    tempo: int = 360
    kappa: int = 32_767
    immunity_period: int = 5_000
    min_allowed_weights: int = 1
    max_weight_limit: int = U16_MAX
    max_allowed_uids: int = 256
    max_allowed_validators: int = 64
    weights_version: int = 0
    weights_rate_limit: int = 100
    activity_cutoff: int = 5_000
    bonds_moving_avg: int = 900_000
    bonds_penalty: int = U16_MAX
    registration_allowed: bool = True
    target_regs_per_interval: int = 1
    adjustment_interval: int = 100
    adjustment_alpha: int = 0
    max_regs_per_block: int = 1
    min_burn: int = 500_000
    max_burn: int = 100 * RAO_PER_TAO
    burn: int = RAO_PER_TAO
    serving_rate_limit: int = 50
    commit_reveal_weights_enabled: bool = False
    commit_reveal_period: int = 1
    liquid_alpha_enabled: bool = False
    alpha_low: int = 45_875
    alpha_high: int = 58_982
    alpha_sigmoid_steepness: int = 1_000
    yuma3_enabled: bool = True
    stake_threshold: int = 0  # global weights-set stake minimum, rao
    owner_hotkey: str | None = None
    owner_coldkey: str | None = None
    extra: dict[str, int] = field(default_factory=dict)
