"""What ``veilnet devnet up`` and ``devnet add-miner`` are asked for, and how a request meets a recorded devnet.

A fresh devnet is built from :class:`DevnetOptions` (defaults where an option is not given). A recorded one
resumes as it was: the options that define the subnet (its neurons, tempo, what miners serve) must then be
left out or agree with the record, since changing them means another subnet (`devnet reset` starts over,
`devnet add-miner` adds miners). Block time, Redis URL and start-up timeout are the running services' own and
may change at any ``up``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from veilnet.errors import ConfigError
from veilnet.models.catalog import MODELS

if TYPE_CHECKING:
    from veilnet.devnet.runtime import DevnetRuntime

__all__ = ["DEFAULT_MODEL", "Backend", "DevnetOptions", "MinerSpec"]

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
Backend = Literal["llamacpp", "openai"]


@dataclass(frozen=True)
class MinerSpec:
    """What one devnet miner serves: ``model`` from the embedded llama.cpp engine, or relayed to an
    OpenAI-compatible ``upstream_url`` with the ``openai`` backend."""

    model: str = DEFAULT_MODEL
    backend: Backend = "llamacpp"
    upstream_url: str | None = None
    tasks: tuple[str, ...] = ("chat",)  # installed tasks it serves; without chat it runs no language model

    def __post_init__(self) -> None:
        from veilnet.tasks.registry import select_tasks

        if not self.tasks:
            raise ConfigError("a miner serves at least one task")
        select_tasks(self.tasks)  # ConfigError naming a task that is not installed
        if self.backend == "openai" and not self.upstream_url:
            raise ConfigError("--backend openai needs --upstream-url (an OpenAI-compatible base URL, e.g. "
                              "http://127.0.0.1:8000/v1)")
        if self.backend == "llamacpp" and self.upstream_url:
            raise ConfigError("--upstream-url is for --backend openai; the llamacpp backend serves the model itself")
        if self.backend == "llamacpp" and self.model not in MODELS:
            raise ConfigError(f"the llamacpp backend serves catalog models only: {', '.join(MODELS)} "
                              f"(not {self.model!r}); use --backend openai for others")

    @property
    def embeds(self) -> bool:
        """Whether the miner also serves the model's embeddings (the embedded engine of a chat model)."""
        return self.backend == "llamacpp" and "chat" in self.tasks and MODELS[self.model].chat


@dataclass(frozen=True)
class DevnetOptions:
    """``None``: not given (a fresh devnet takes the default, a recorded one keeps what it has)."""

    miners: int | None = None
    validators: int | None = None
    tempo: int | None = None
    model: str | None = None
    backend: Backend | None = None
    upstream_url: str | None = None
    block_time: float | None = None
    redis_url: str | None = None
    base_port: int | None = None
    ready_timeout: float = 180.0
    tasks: tuple[str, ...] | None = None  # --task (repeatable): what the miners serve (default: chat)

    def miner_spec(self) -> MinerSpec:
        return MinerSpec(self.model or DEFAULT_MODEL, self.backend or "llamacpp", self.upstream_url,
                         self.tasks or ("chat",))

    def check_against(self, runtime: DevnetRuntime) -> None:
        """Refuse options that would change what the recorded devnet is, naming each and what it is."""
        from veilnet.devnet.runtime import port_of

        miners = runtime.miners()
        recorded: dict[str, tuple[object, set[object]]] = {
            "--miners": (self.miners, {len(miners)}),
            "--validators": (self.validators, {len(runtime.validators())}),
            "--tempo": (self.tempo, {runtime.tempo}),
            "--model": (self.model, {m.model for m in miners}),
            "--backend": (self.backend, {m.backend for m in miners}),
            "--upstream-url": (self.upstream_url, {m.upstream_url for m in miners}),
            "--base-port": (self.base_port, {port_of(runtime.chain_url)}),
            "--task": (None if self.tasks is None else ",".join(self.tasks), {",".join(m.tasks) for m in miners}),
        }
        conflicts = [
            f"{flag} {given} (it has {', '.join(sorted(str(v) for v in have))})"
            for flag, (given, have) in recorded.items()
            if given is not None and have != {given}
        ]
        if conflicts:
            raise ConfigError(
                f"the devnet in {runtime.data_dir} resumes as it was created, not with {'; '.join(conflicts)}. "
                "`veilnet devnet add-miner` adds a miner; `veilnet devnet reset` starts a new devnet"
            )
