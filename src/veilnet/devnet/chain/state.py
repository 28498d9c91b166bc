"""The devnet chain's state and its state transitions: a pure model of Subtensor's subnet logic.

Every call works on a copy of the state (:meth:`ChainState.copy`) and either returns normally or raises a
typed :mod:`veilnet.chain.errors` error; the caller keeps the copy only on success, so a failed call leaves
the chain exactly as it was. No I/O here: persistence and the block timer live in ``persistence.py`` and
``local.py``.

Modelled after pallets/subtensor (runtime spec >= 423): subnets with Subtensor's defaults, burned
registration with the burn price adjustment, immunity and pruning, per-hotkey stake, serving with its
validation and rate limit, ``set_weights`` checks in Subtensor's order, commit-reveal v2, the epoch schedule,
per-block emission with the owner's 18 % cut and the exact epoch (:func:`veilnet.chain.epoch.run_epoch`).
Devnet simplification: stake is 1 alpha per staked TAO (no AMM pools); see docs/devnet-chain.md.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import fields

from pydantic import BaseModel, Field

from veilnet.chain import errors as ce
from veilnet.chain.epoch import EpochInput, run_epoch
from veilnet.chain.types import RAO_PER_TAO, U16_MAX, AxonInfo, Metagraph, NeuronInfo, SubnetHyperparameters
from veilnet.chain.weights import commit_hash, is_self_weight, max_upscale_u16

__all__ = [
    "BLOCK_EMISSION",
    "DEVNET_DEFAULTS",
    "HYPERPARAMETERS",
    "MAX_PENDING_COMMITS",
    "MIN_STAKE",
    "NETWORK_LOCK_COST",
    "OWNER_CUT_U16",
    "ChainState",
    "NeuronState",
    "SubnetState",
    "state_digest",
]

BLOCK_EMISSION = RAO_PER_TAO  # 1 alpha per block per subnet
OWNER_CUT_U16 = 11_796  # 18 % of u16::MAX, Subtensor's default SubnetOwnerCut
NETWORK_LOCK_COST = 100 * RAO_PER_TAO  # devnet: a fixed subnet lock
MIN_STAKE = 500_000  # Subtensor's DefaultMinStake (rao)
MAX_PENDING_COMMITS = 10

# Hyperparameters settable through sudo_set_hyperparameter, with Subtensor's defaults for a new subnet
# (the defaults of SubnetHyperparameters, one source of truth), except what DEVNET_DEFAULTS sets.
_NOT_SETTABLE = {"netuid", "burn", "stake_threshold", "owner_hotkey", "owner_coldkey", "extra"}
# Commit-reveal is on for every new subnet, as Subtensor creates them (DefaultCommitRevealWeightsEnabled),
# with the reveal period docs/incentives.md ("Weight copying") recommends.
DEVNET_DEFAULTS: dict[str, int | bool] = {"commit_reveal_weights_enabled": True, "commit_reveal_period": 2}
HYPERPARAMETERS: dict[str, int | bool] = {
    **{f.name: f.default for f in fields(SubnetHyperparameters) if f.name not in _NOT_SETTABLE},  # type: ignore[misc]
    **DEVNET_DEFAULTS,
}


class NeuronState(BaseModel):
    hotkey: str
    coldkey: str
    registered_at: int
    last_update: int
    axon: AxonInfo | None = None
    weights: list[tuple[int, int]] = Field(default_factory=list)
    bonds: list[tuple[int, int]] = Field(default_factory=list)
    validator_permit: bool = False
    incentive: int = 0
    dividends: int = 0
    consensus: int = 0
    validator_trust: int = 0
    emission: int = 0
    active: bool = True


class WeightCommit(BaseModel):
    hash: str
    commit_epoch: int
    commit_block: int


class SubnetState(BaseModel):
    netuid: int
    owner_coldkey: str
    owner_hotkey: str
    hyper: dict[str, int | bool] = Field(default_factory=lambda: dict(HYPERPARAMETERS))
    burn: int = RAO_PER_TAO
    neurons: list[NeuronState] = Field(default_factory=list)
    # stake[hotkey][coldkey] = rao of alpha
    stake: dict[str, dict[str, int]] = Field(default_factory=dict)
    last_epoch_block: int = 0
    last_mechanism_step_block: int = 0
    pending_emission: int = 0
    regs_this_interval: int = 0
    regs_this_block: int = 0
    regs_block: int = 0
    last_adjustment_block: int = 0
    commits: dict[str, list[WeightCommit]] = Field(default_factory=dict)

    def uid_of(self, hotkey: str) -> int | None:
        for uid, neuron in enumerate(self.neurons):
            if neuron.hotkey == hotkey:
                return uid
        return None

    def total_stake(self, hotkey: str) -> int:
        return sum(self.stake.get(hotkey, {}).values())

    def epoch_index(self, block: int) -> int:
        tempo = int(self.hyper["tempo"])
        return (block + self.netuid + 1) // (tempo + 1)


class ChainState(BaseModel):
    """The whole devnet chain. Copy before mutating (see module docstring)."""

    block: int = 0
    balances: dict[str, int] = Field(default_factory=dict)
    hotkey_owner: dict[str, str] = Field(default_factory=dict)
    subnets: dict[int, SubnetState] = Field(default_factory=dict)
    nonces: dict[str, int] = Field(default_factory=dict)
    stake_threshold: int = 0  # global WeightsMinStake, rao

    def copy_state(self) -> ChainState:
        return self.model_copy(deep=True)

    # --- reads ---------------------------------------------------------------------------------------
    def subnet(self, netuid: int) -> SubnetState:
        subnet = self.subnets.get(netuid)
        if subnet is None:
            raise ce.SubnetNotExists(f"subnet {netuid} does not exist")
        return subnet

    def hyperparameters(self, netuid: int) -> SubnetHyperparameters:
        subnet = self.subnet(netuid)
        return SubnetHyperparameters(
            netuid=netuid,
            burn=subnet.burn,
            stake_threshold=self.stake_threshold,
            owner_hotkey=subnet.owner_hotkey,
            owner_coldkey=subnet.owner_coldkey,
            **subnet.hyper,  # type: ignore[arg-type]
        )

    def metagraph(self, netuid: int) -> Metagraph:
        subnet = self.subnet(netuid)
        neurons = tuple(
            NeuronInfo(
                uid=uid,
                hotkey=n.hotkey,
                coldkey=n.coldkey,
                stake=subnet.total_stake(n.hotkey),
                axon=n.axon,
                validator_permit=n.validator_permit,
                incentive=n.incentive,
                dividends=n.dividends,
                emission=n.emission,
                consensus=n.consensus,
                validator_trust=n.validator_trust,
                last_update=n.last_update,
                block_at_registration=n.registered_at,
                active=n.active,
                pruning_score=n.emission,
            )
            for uid, n in enumerate(subnet.neurons)
        )
        return Metagraph(
            netuid=netuid, block=self.block, neurons=neurons,
            owner_hotkey=subnet.owner_hotkey, owner_coldkey=subnet.owner_coldkey,
        )

    def next_epoch_block(self, netuid: int) -> int:
        subnet = self.subnet(netuid)
        return subnet.last_epoch_block + int(subnet.hyper["tempo"])

    def _neuron(self, netuid: int, hotkey: str) -> tuple[SubnetState, int, NeuronState]:
        subnet = self.subnet(netuid)
        uid = subnet.uid_of(hotkey)
        if uid is None:
            raise ce.NotRegistered(f"hotkey {hotkey} is not registered on subnet {netuid}")
        return subnet, uid, subnet.neurons[uid]

    # --- devnet-only administration ---------------------------------------------------------------
    def fund(self, ss58: str, amount: int) -> None:
        if amount <= 0:
            raise ce.AmountTooLow(f"fund amount must be positive, got {amount}")
        self.balances[ss58] = self.balances.get(ss58, 0) + amount

    def sudo_set_hyperparameter(self, netuid: int, name: str, value: int | bool) -> None:
        if name == "stake_threshold":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ce.ChainError("stake_threshold takes a non-negative integer", code="InvalidHyperparameter")
            self.stake_threshold = value
            return
        subnet = self.subnet(netuid)
        if name == "burn":
            subnet.burn = int(value)
            return
        if name not in HYPERPARAMETERS:
            raise ce.ChainError(f"unknown hyperparameter {name!r}; known: {', '.join(sorted(HYPERPARAMETERS))}",
                                code="UnknownHyperparameter")
        default = HYPERPARAMETERS[name]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ce.ChainError(f"{name} takes true or false", code="InvalidHyperparameter")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ce.ChainError(f"{name} takes a non-negative integer, got {value!r}", code="InvalidHyperparameter")
        if name == "tempo" and value == 0:
            raise ce.ChainError("tempo must be at least 1", code="InvalidHyperparameter")
        subnet.hyper[name] = value

    # --- extrinsics ---------------------------------------------------------------------------------
    def _debit(self, coldkey: str, amount: int) -> None:
        balance = self.balances.get(coldkey, 0)
        if balance < amount:
            raise ce.NotEnoughBalance(f"coldkey {coldkey} has {balance} rao, needs {amount}")
        self.balances[coldkey] = balance - amount

    def _associate(self, coldkey: str, hotkey: str) -> None:
        owner = self.hotkey_owner.get(hotkey)
        if owner is not None and owner != coldkey:
            raise ce.NonAssociatedColdKey(f"hotkey {hotkey} belongs to another coldkey")
        self.hotkey_owner[hotkey] = coldkey

    def register_subnet(self, coldkey: str, hotkey: str) -> int:
        self._associate(coldkey, hotkey)
        self._debit(coldkey, NETWORK_LOCK_COST)
        netuid = 1
        while netuid in self.subnets:
            netuid += 1
        subnet = SubnetState(netuid=netuid, owner_coldkey=coldkey, owner_hotkey=hotkey,
                             last_epoch_block=self.block, last_adjustment_block=self.block)
        subnet.neurons.append(NeuronState(hotkey=hotkey, coldkey=coldkey, registered_at=self.block,
                                          last_update=self.block))
        self.subnets[netuid] = subnet
        return netuid

    def burned_register(self, netuid: int, coldkey: str, hotkey: str) -> int:
        subnet = self.subnet(netuid)
        h = subnet.hyper
        if not h["registration_allowed"]:
            raise ce.SubNetRegistrationDisabled(f"registration is disabled on subnet {netuid}")
        if subnet.regs_block == self.block and subnet.regs_this_block >= int(h["max_regs_per_block"]):
            raise ce.TooManyRegistrationsThisBlock(f"subnet {netuid} allows {h['max_regs_per_block']} per block")
        if subnet.regs_this_interval >= 3 * int(h["target_regs_per_interval"]):
            raise ce.TooManyRegistrationsThisInterval(f"subnet {netuid} registration interval is full")
        if subnet.uid_of(hotkey) is not None:
            raise ce.HotKeyAlreadyRegisteredInSubNet(f"hotkey {hotkey} is already registered on subnet {netuid}")
        self._associate(coldkey, hotkey)
        self._debit(coldkey, subnet.burn)
        neuron = NeuronState(hotkey=hotkey, coldkey=coldkey, registered_at=self.block, last_update=self.block)
        if len(subnet.neurons) < int(h["max_allowed_uids"]):
            subnet.neurons.append(neuron)
            uid = len(subnet.neurons) - 1
        else:
            uid = self._uid_to_prune(subnet)
            old = subnet.neurons[uid]
            subnet.stake.pop(old.hotkey, None)
            subnet.commits.pop(old.hotkey, None)
            subnet.neurons[uid] = neuron
        if subnet.regs_block != self.block:
            subnet.regs_block = self.block
            subnet.regs_this_block = 0
        subnet.regs_this_block += 1
        subnet.regs_this_interval += 1
        return uid

    def _uid_to_prune(self, subnet: SubnetState) -> int:
        immunity = int(subnet.hyper["immunity_period"])
        best: dict[bool, tuple[int, int, int]] = {}
        for uid, neuron in enumerate(subnet.neurons):
            if neuron.hotkey == subnet.owner_hotkey:
                continue  # owner hotkeys are never pruned
            immune = self.block - neuron.registered_at < immunity
            key = (neuron.emission, neuron.registered_at, uid)
            if immune not in best or key < best[immune]:
                best[immune] = key
        choice = best.get(False) or best.get(True)
        if choice is None:
            raise ce.NoNeuronIdAvailable("every uid is held by the subnet owner")
        return choice[2]

    def add_stake(self, netuid: int, coldkey: str, hotkey: str, amount: int) -> None:
        subnet, _, _ = self._neuron(netuid, hotkey)
        if amount < MIN_STAKE:
            raise ce.AmountTooLow(f"stake at least {MIN_STAKE} rao, got {amount}")
        self._debit(coldkey, amount)
        bucket = subnet.stake.setdefault(hotkey, {})
        bucket[coldkey] = bucket.get(coldkey, 0) + amount

    def remove_stake(self, netuid: int, coldkey: str, hotkey: str, amount: int) -> None:
        subnet, _, _ = self._neuron(netuid, hotkey)
        if amount <= 0:
            raise ce.AmountTooLow("unstake a positive amount")
        held = subnet.stake.get(hotkey, {}).get(coldkey, 0)
        if held < amount:
            raise ce.NotEnoughStakeToWithdraw(f"coldkey holds {held} rao on {hotkey}, asked {amount}")
        subnet.stake[hotkey][coldkey] = held - amount
        self.balances[coldkey] = self.balances.get(coldkey, 0) + amount

    def serve_axon(self, netuid: int, hotkey: str, ip: str, port: int, protocol: int, version: int) -> None:
        subnet, _, neuron = self._neuron(netuid, hotkey)
        try:
            address = ipaddress.ip_address(ip)
        except ValueError as exc:
            raise ce.InvalidIpAddress(f"not an IP address: {ip!r}") from exc
        if address.is_unspecified or address.is_multicast:
            raise ce.InvalidIpAddress(f"{ip} cannot be served")
        if not 0 < port < 65_536:
            raise ce.InvalidPort(f"port must be 1..65535, got {port}")
        if protocol not in (0, 4):
            raise ce.InvalidIpType(f"protocol must be 0 (tcp) or 4 (http), got {protocol}")
        rate = int(subnet.hyper["serving_rate_limit"])
        if neuron.axon is not None and rate > 0 and self.block - neuron.axon.block < rate:
            raise ce.ServingRateLimitExceeded(f"served at block {neuron.axon.block}; wait {rate} blocks")
        neuron.axon = AxonInfo(ip=str(address), port=port, ip_type=address.version, protocol=protocol,
                               version=version, block=self.block)

    def _check_weights(
        self, netuid: int, hotkey: str, uids: Sequence[int], values: Sequence[int], version_key: int
    ) -> tuple[SubnetState, NeuronState, list[tuple[int, int]]]:
        if len(uids) != len(values):
            raise ce.WeightVecNotEqualSize(f"{len(uids)} uids but {len(values)} weights")
        subnet, uid, neuron = self._neuron(netuid, hotkey)
        h = subnet.hyper
        stake = subnet.total_stake(hotkey)
        if stake < self.stake_threshold:
            raise ce.NotEnoughStakeToSetWeights(f"stake {stake} rao is below the threshold {self.stake_threshold}")
        if int(h["weights_version"]) > version_key:
            raise ce.IncorrectWeightVersionKey(f"version key {version_key} < subnet's {h['weights_version']}")
        rate = int(h["weights_rate_limit"])
        # Subtensor's check_rate_limit: counted from LastUpdate, which registration sets (0 = never).
        if neuron.last_update != 0:
            if self.block - neuron.last_update < rate:
                raise ce.SettingWeightsTooFast(
                    f"last set at block {neuron.last_update}; the rate limit is {rate} blocks"
                )
        self_weight = is_self_weight(uid, uids, values)
        if not self_weight and not neuron.validator_permit:
            raise ce.NoValidatorPermit(f"uid {uid} has no validator permit on subnet {netuid}")
        if len(set(uids)) != len(uids):
            raise ce.DuplicateUids("a uid appears twice")
        n = len(subnet.neurons)
        if any(u < 0 or u >= n for u in uids):
            raise ce.UidVecContainInvalidOne(f"uids must be 0..{n - 1}")
        if any(v < 0 or v > U16_MAX for v in values):
            raise ce.MaxWeightExceeded("weights are u16 (0..65535)")
        min_weights = min(int(h["min_allowed_weights"]), n)
        if not self_weight and len(uids) < min_weights:
            raise ce.WeightVecLengthIsLow(f"at least {min_weights} weights are required")
        upscaled = max_upscale_u16(list(values))
        limit = int(h["max_weight_limit"])
        if not self_weight and limit < U16_MAX and len(uids) > 1:
            total = sum(upscaled)
            if total and any(v * U16_MAX // total > limit for v in upscaled):
                raise ce.MaxWeightExceeded(f"a weight exceeds max_weight_limit {limit}")
        return subnet, neuron, sorted(zip(uids, upscaled, strict=True))

    def set_weights(self, netuid: int, hotkey: str, uids: Sequence[int], values: Sequence[int], version_key: int) -> None:
        subnet = self.subnet(netuid)
        if subnet.hyper["commit_reveal_weights_enabled"]:
            raise ce.CommitRevealEnabled("commit-reveal is on: use commit_weights / reveal_weights")
        _, neuron, row = self._check_weights(netuid, hotkey, uids, values, version_key)
        neuron.weights = row
        neuron.last_update = self.block

    def commit_weights(self, netuid: int, hotkey: str, commit: bytes) -> None:
        subnet, _, _ = self._neuron(netuid, hotkey)
        if not subnet.hyper["commit_reveal_weights_enabled"]:
            raise ce.CommitRevealDisabled("commit-reveal is off on this subnet: use set_weights")
        if len(commit) != 32:
            raise ce.InvalidRevealCommitHashNotMatch("a commit is a 32-byte blake2_256 hash")
        pending = [c for c in subnet.commits.get(hotkey, []) if not self._commit_expired(subnet, c)]
        if len(pending) >= MAX_PENDING_COMMITS:
            raise ce.TooManyUnrevealedCommits(f"at most {MAX_PENDING_COMMITS} unrevealed commits")
        rate = int(subnet.hyper["weights_rate_limit"])
        last_commit = max((c.commit_block for c in pending), default=None)
        if last_commit is not None and self.block - last_commit < rate:
            raise ce.SettingWeightsTooFast(f"last commit at block {last_commit}; the rate limit is {rate} blocks")
        pending.append(WeightCommit(hash=commit.hex(), commit_epoch=subnet.epoch_index(self.block),
                                    commit_block=self.block))
        subnet.commits[hotkey] = pending

    def _commit_expired(self, subnet: SubnetState, commit: WeightCommit) -> bool:
        return subnet.epoch_index(self.block) > commit.commit_epoch + int(subnet.hyper["commit_reveal_period"])

    def reveal_weights(
        self, netuid: int, hotkey: str, uids: Sequence[int], values: Sequence[int], salt: Sequence[int],
        version_key: int, hotkey_public_key: bytes,
    ) -> None:
        subnet, _, _ = self._neuron(netuid, hotkey)
        if not subnet.hyper["commit_reveal_weights_enabled"]:
            raise ce.CommitRevealDisabled("commit-reveal is off on this subnet")
        commits = subnet.commits.get(hotkey, [])
        if not commits:
            raise ce.NoWeightsCommitFound(f"no pending commit for {hotkey}")
        wanted = commit_hash(hotkey_public_key, netuid, uids, values, salt, version_key).hex()
        match = next((c for c in commits if c.hash == wanted), None)
        if match is None:
            raise ce.InvalidRevealCommitHashNotMatch("no commit matches these weights, salt and version key")
        current = subnet.epoch_index(self.block)
        reveal_epoch = match.commit_epoch + int(subnet.hyper["commit_reveal_period"])
        if current < reveal_epoch:
            raise ce.RevealTooEarly(f"reveal in epoch {reveal_epoch}; now {current}")
        if current > reveal_epoch:
            raise ce.ExpiredWeightCommit(f"the commit expired after epoch {reveal_epoch}")
        _, neuron, row = self._check_weights(netuid, hotkey, uids, values, version_key)
        neuron.weights = row
        neuron.last_update = self.block
        subnet.commits[hotkey] = [c for c in commits if c is not match]

    # --- blocks and epochs ------------------------------------------------------------------------
    def produce_block(self) -> list[int]:
        """Advance one block: accrue emission, adjust burns, run due epochs. Returns netuids that ran."""
        self.block += 1
        ran = []
        for netuid, subnet in sorted(self.subnets.items()):
            subnet.pending_emission += BLOCK_EMISSION
            self._adjust_burn(subnet)
            if self.block - subnet.last_epoch_block >= int(subnet.hyper["tempo"]):
                self._run_epoch(subnet)
                ran.append(netuid)
        return ran

    def _adjust_burn(self, subnet: SubnetState) -> None:
        h = subnet.hyper
        interval = int(h["adjustment_interval"])
        if interval <= 0 or self.block - subnet.last_adjustment_block < interval:
            return
        target = max(1, int(h["target_regs_per_interval"]))
        regs = subnet.regs_this_interval
        burn = subnet.burn
        if regs != target:
            upgraded = burn * (regs + target) // (2 * target)
            alpha = int(h["adjustment_alpha"])  # u64 fraction of u64::MAX
            burn = (alpha * burn + (2**64 - 1 - alpha) * upgraded) // (2**64 - 1)
        subnet.burn = max(int(h["min_burn"]), min(int(h["max_burn"]), burn))
        subnet.regs_this_interval = 0
        subnet.last_adjustment_block = self.block

    def _run_epoch(self, subnet: SubnetState) -> None:
        h = subnet.hyper
        neurons = subnet.neurons
        n = len(neurons)
        emission = subnet.pending_emission
        owner_cut = emission * OWNER_CUT_U16 // U16_MAX
        rao_emission = emission - owner_cut
        owner_uid = subnet.uid_of(subnet.owner_hotkey)
        commit_blocks: list[int | None] | None = None
        if h["commit_reveal_weights_enabled"]:
            commit_blocks = []
            for neuron in neurons:
                active = [c.commit_block for c in subnet.commits.get(neuron.hotkey, [])
                          if not self._commit_expired(subnet, c)]
                commit_blocks.append(min(active) if active else None)
        out = run_epoch(
            EpochInput(
                n=n,
                current_block=self.block,
                tempo=int(h["tempo"]),
                activity_cutoff=int(h["activity_cutoff"]),
                last_mechanism_step_block=subnet.last_mechanism_step_block,
                stake=[subnet.total_stake(x.hotkey) for x in neurons],
                last_update=[x.last_update for x in neurons],
                block_at_registration=[x.registered_at for x in neurons],
                validator_permit=[x.validator_permit for x in neurons],
                weights=[list(x.weights) for x in neurons],
                bonds=[list(x.bonds) for x in neurons],
                kappa=int(h["kappa"]),
                bonds_penalty=int(h["bonds_penalty"]),
                bonds_moving_average=int(h["bonds_moving_avg"]),
                max_allowed_validators=int(h["max_allowed_validators"]),
                yuma3=bool(h["yuma3_enabled"]),
                liquid_alpha=bool(h["liquid_alpha_enabled"]),
                alpha_low=int(h["alpha_low"]),
                alpha_high=int(h["alpha_high"]),
                alpha_sigmoid_steepness=int(h["alpha_sigmoid_steepness"]),
                rao_emission=rao_emission,
                owner_uid=owner_uid,
                commit_blocks=commit_blocks,
            )
        )
        for uid, neuron in enumerate(neurons):
            server = out.server_emission[uid]
            if neuron.coldkey == subnet.owner_coldkey and uid != owner_uid:
                server = 0  # incentive of miners owned by the subnet owner's coldkey is burned
            credited = server + out.validator_emission[uid]
            neuron.incentive = out.incentive[uid]
            neuron.dividends = out.dividends[uid]
            neuron.consensus = out.consensus[uid]
            neuron.validator_trust = out.validator_trust[uid]
            neuron.validator_permit = out.validator_permit[uid]
            neuron.bonds = list(out.bonds[uid])
            neuron.emission = out.emission[uid]
            neuron.active = out.active[uid]
            if credited:
                bucket = subnet.stake.setdefault(neuron.hotkey, {})
                bucket[neuron.coldkey] = bucket.get(neuron.coldkey, 0) + credited
        owner_bucket = subnet.stake.setdefault(subnet.owner_hotkey, {})
        owner_bucket[subnet.owner_coldkey] = owner_bucket.get(subnet.owner_coldkey, 0) + owner_cut
        subnet.pending_emission = 0
        subnet.last_epoch_block = self.block
        subnet.last_mechanism_step_block = self.block


def state_digest(state: ChainState) -> str:
    """A stable digest of the state (tests compare it before and after a failed call)."""
    return hashlib.sha256(state.model_dump_json().encode()).hexdigest()
