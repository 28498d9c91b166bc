"""The chain side of the simulator: one subnet's epoch-relevant state and its transitions, as the devnet chain
(:mod:`veilnet.devnet.chain.state`) applies them, over the exact epoch (:func:`veilnet.chain.epoch.run_epoch`).

What is modelled, with the devnet's rules: blocks and the epoch schedule (an epoch every ``tempo`` blocks
from the subnet's creation), pending emission with the owner's 18 % cut, emission credited as stake,
registrations, weights stored max-upscaled, validator permits gating weights, and commit-reveal: a commit
made in epoch index ``e`` (``(block + netuid + 1) // (tempo + 1)``) can be revealed only while the index is
``e + reveal_period`` and expires after it; the epoch masks a committer's weights to uids registered after
its earliest unexpired commit. Revealed (or set) weights are public and are what the epoch uses.

Left out because nothing here depends on it: coldkeys and balances, burns, serving, commit hashes (a commit
holds its weights; whoever holds the commit is the one who can reveal it) and rate limits (each validator
acts once per tempo; :class:`SubnetParams` refuses a tempo shorter than the rate limit).
``tests/sim/test_driver_vs_devnet.py`` checks that the model and the devnet chain give identical epochs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from veilnet.chain.epoch import EpochInput, EpochOutput, SparseRow, run_epoch
from veilnet.chain.types import RAO_PER_TAO, U16_MAX
from veilnet.chain.weights import max_upscale_u16
from veilnet.errors import ConfigError, InvalidRequest

__all__ = ["OWNER_CUT_U16", "OWNER_UID", "Commit", "SubnetModel", "SubnetParams"]

OWNER_CUT_U16 = 11_796  # the devnet's (and Subtensor's default) SubnetOwnerCut: 18 % of u16::MAX
OWNER_UID = 0  # the subnet owner's hotkey, registered with the subnet
MAX_PENDING_COMMITS = 10


@dataclass(frozen=True)
class SubnetParams:
    """The subnet's hyperparameters that shape epochs and commit-reveal (Subtensor's names and defaults)."""

    tempo: int = 360
    netuid: int = 1
    commit_reveal: bool = True
    reveal_period: int = 1
    yuma3: bool = True
    liquid_alpha: bool = False
    bonds_moving_average: int = 900_000
    bonds_penalty: int = U16_MAX
    kappa: int = 32_767
    alpha_low: int = 45_875
    alpha_high: int = 58_982
    alpha_sigmoid_steepness: int = 1_000
    activity_cutoff: int = 5_000
    max_allowed_validators: int = 64
    weights_rate_limit: int = 100
    block_emission: int = RAO_PER_TAO
    restake: bool = True  # credit emission to stake each epoch (the chain does); False holds stake fixed

    def __post_init__(self) -> None:
        if self.tempo < 1:
            raise ConfigError(f"tempo must be at least 1, got {self.tempo}")
        if self.tempo < self.weights_rate_limit:
            raise ConfigError(
                f"tempo {self.tempo} is shorter than weights_rate_limit {self.weights_rate_limit}: validators that "
                "act once per tempo would be refused"
            )
        if self.reveal_period < 1 or self.reveal_period >= MAX_PENDING_COMMITS:
            raise ConfigError(f"reveal_period must be 1..{MAX_PENDING_COMMITS - 1}, got {self.reveal_period}")

    def epoch_index(self, block: int) -> int:
        return (block + self.netuid + 1) // (self.tempo + 1)


@dataclass
class Commit:
    epoch_index: int
    block: int
    row: SparseRow


@dataclass
class _Neuron:
    registered_at: int
    last_update: int
    stake: int = 0
    weights: SparseRow = field(default_factory=list)
    bonds: SparseRow = field(default_factory=list)
    validator_permit: bool = False
    commits: list[Commit] = field(default_factory=list)


class SubnetModel:
    """A subnet from its creation at ``created_block``; uid 0 is the owner's hotkey."""

    def __init__(self, params: SubnetParams, created_block: int = 0) -> None:
        self.params = params
        self.block = created_block
        self._neurons = [_Neuron(registered_at=created_block, last_update=created_block)]
        self._last_epoch_block = created_block
        self._last_mechanism_step_block = 0
        self._pending_emission = 0

    # --- reads ---------------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        return len(self._neurons)

    def stake(self, uid: int) -> int:
        return self._neurons[uid].stake

    def stakes(self) -> list[int]:
        return [neuron.stake for neuron in self._neurons]

    def weights(self, uid: int) -> SparseRow:
        """The weights in force for ``uid``: set or revealed, so public."""
        return list(self._neurons[uid].weights)

    def has_permit(self, uid: int) -> bool:
        return self._neurons[uid].validator_permit

    def next_epoch_block(self) -> int:
        return self._last_epoch_block + self.params.tempo

    # --- transitions ----------------------------------------------------------------------------------
    def register(self) -> int:
        self._neurons.append(_Neuron(registered_at=self.block, last_update=self.block))
        return len(self._neurons) - 1

    def add_stake(self, uid: int, amount: int) -> None:
        self._neurons[uid].stake += amount

    def set_weights(self, uid: int, row: SparseRow) -> bool:
        """Set weights directly (commit-reveal off). False when the uid holds no validator permit."""
        if self.params.commit_reveal:
            raise InvalidRequest("commit-reveal is on: commit, then reveal", param="commit_reveal")
        return self._store_weights(uid, row)

    def commit(self, uid: int, row: SparseRow) -> None:
        if not self.params.commit_reveal:
            raise InvalidRequest("commit-reveal is off: set weights directly", param="commit_reveal")
        neuron = self._neurons[uid]
        neuron.commits = [c for c in neuron.commits if not self._expired(c)]
        if len(neuron.commits) >= MAX_PENDING_COMMITS:
            raise InvalidRequest(f"uid {uid} has {MAX_PENDING_COMMITS} unrevealed commits", param="commits")
        neuron.commits.append(Commit(self.params.epoch_index(self.block), self.block, list(row)))

    def reveal_due(self, uid: int) -> int:
        """Reveal, oldest first, every commit of ``uid`` whose reveal epoch is now; drop expired ones (as the
        validator's ``reveal_due`` does). A reveal without a permit fails and leaves the commit. Returns how
        many were revealed."""
        neuron = self._neurons[uid]
        current = self.params.epoch_index(self.block)
        revealed = 0
        for commit in list(neuron.commits):
            reveal_epoch = commit.epoch_index + self.params.reveal_period
            if current < reveal_epoch:
                continue
            if current > reveal_epoch:
                neuron.commits.remove(commit)
                continue
            if self._store_weights(uid, commit.row):
                neuron.commits.remove(commit)
                revealed += 1
        return revealed

    def advance_to(self, block: int) -> list[EpochOutput]:
        """Produce blocks up to ``block``; returns the outputs of the epochs that ran, in order."""
        outputs = []
        while self.block < block:
            self.block += 1
            self._pending_emission += self.params.block_emission
            if self.block - self._last_epoch_block >= self.params.tempo:
                outputs.append(self._run_epoch())
        return outputs

    # --- internals ------------------------------------------------------------------------------------
    def _expired(self, commit: Commit) -> bool:
        return self.params.epoch_index(self.block) > commit.epoch_index + self.params.reveal_period

    def _store_weights(self, uid: int, row: SparseRow) -> bool:
        neuron = self._neurons[uid]
        self_weight = len(row) == 1 and row[0][0] == uid
        if not self_weight and not neuron.validator_permit:
            return False
        if any(not 0 <= j < self.n for j, _ in row):
            raise InvalidRequest(f"uid {uid} weights a uid outside 0..{self.n - 1}", param="weights")
        ordered = sorted(row)
        neuron.weights = list(zip([j for j, _ in ordered], max_upscale_u16([w for _, w in ordered]), strict=True))
        neuron.last_update = self.block
        return True

    def _epoch_input(self, rao_emission: int) -> EpochInput:
        p = self.params
        neurons = self._neurons
        commit_blocks: list[int | None] | None = None
        if p.commit_reveal:
            commit_blocks = []
            for neuron in neurons:
                active = [c.block for c in neuron.commits if not self._expired(c)]
                commit_blocks.append(min(active) if active else None)
        return EpochInput(
            n=len(neurons), current_block=self.block, tempo=p.tempo, activity_cutoff=p.activity_cutoff,
            last_mechanism_step_block=self._last_mechanism_step_block,
            stake=[x.stake for x in neurons], last_update=[x.last_update for x in neurons],
            block_at_registration=[x.registered_at for x in neurons],
            validator_permit=[x.validator_permit for x in neurons],
            weights=[list(x.weights) for x in neurons], bonds=[list(x.bonds) for x in neurons],
            kappa=p.kappa, bonds_penalty=p.bonds_penalty, bonds_moving_average=p.bonds_moving_average,
            max_allowed_validators=p.max_allowed_validators, yuma3=p.yuma3, liquid_alpha=p.liquid_alpha,
            alpha_low=p.alpha_low, alpha_high=p.alpha_high, alpha_sigmoid_steepness=p.alpha_sigmoid_steepness,
            rao_emission=rao_emission, owner_uid=OWNER_UID, commit_blocks=commit_blocks,
        )

    def _run_epoch(self) -> EpochOutput:
        emission = self._pending_emission
        owner_cut = emission * OWNER_CUT_U16 // U16_MAX
        out = run_epoch(self._epoch_input(emission - owner_cut))
        for uid, neuron in enumerate(self._neurons):
            neuron.validator_permit = out.validator_permit[uid]
            neuron.bonds = list(out.bonds[uid])
            if self.params.restake:
                neuron.stake += out.server_emission[uid] + out.validator_emission[uid]
        if self.params.restake:
            self._neurons[OWNER_UID].stake += owner_cut
        self._pending_emission = 0
        self._last_epoch_block = self.block
        self._last_mechanism_step_block = self.block
        return out
