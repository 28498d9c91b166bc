"""``veilnet devnet up|down|reset|add-miner``: a whole inference subnet on this machine, kept between runs.

The first ``up`` plans the devnet — wallets, ports, neurons — then starts Redis (the bundled server unless a
URL is given), the embedded chain, a subnet with development-friendly hyperparameters, registration and
stake, the miners, the validators (the first one also runs the gateway) and creates an API key. Every later
``up`` resumes that devnet from ``<data dir>/devnet.json`` with the chain's, Redis' and the database's
state on disk: the same netuid, stakes, ports, gateway URL and API key. Every service is a ``veilnet ...``
process in its own session, so ``status``, ``down`` and ``add-miner`` work from another shell.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from veilnet.devnet.options import DevnetOptions, MinerSpec
from veilnet.devnet.processes import ProcessRecord, ServiceRecord, terminate, wait_http_ok
from veilnet.devnet.runtime import (
    DevnetRuntime,
    NeuronRecord,
    devnet_lock,
    load_runtime,
    running_devnet,
    save_runtime,
)
from veilnet.devnet.services import Launcher, free_port, stop_services
from veilnet.devnet.subnet import ensure_subnet, neuron_record
from veilnet.errors import ConfigError
from veilnet.settings import Settings

__all__ = ["DevnetOptions", "add_miner", "devnet_down", "devnet_reset", "devnet_up", "stop_own_services"]

Progress = Callable[[str], None]

DEFAULT_MINERS = 3
DEFAULT_VALIDATORS = 1
DEFAULT_TEMPO = 40
DEFAULT_BLOCK_TIME = 0.5


class _Ports:
    def __init__(self, base: int | None) -> None:
        self._next = base

    def url(self) -> str:
        if self._next is None:
            return f"http://127.0.0.1:{free_port()}"
        port = self._next
        self._next += 1
        return f"http://127.0.0.1:{port}"


def _plan(settings: Settings, options: DevnetOptions) -> DevnetRuntime:
    """A new devnet's record: wallets created, ports chosen, nothing started (netuid comes with the subnet)."""
    miners = options.miners or DEFAULT_MINERS
    validators = options.validators or DEFAULT_VALIDATORS
    if miners < 1 or validators < 1:
        raise ConfigError("a devnet needs at least one miner and one validator")
    spec = options.miner_spec()
    data_dir = settings.devnet.data_dir
    wallet_path = data_dir / "wallets"
    ports = _Ports(options.base_port)
    chain_url = ports.url()
    neurons = [neuron_record(wallet_path, "owner", "owner")]
    neurons += [neuron_record(wallet_path, f"validator-{i}", "validator", gateway=i == 0) for i in range(validators)]
    neurons += [_miner_record(wallet_path, f"miner-{i}", spec, ports.url()) for i in range(miners)]
    return DevnetRuntime(
        data_dir=str(data_dir), netuid=None, chain_url=chain_url, redis_url="",
        database_url=f"sqlite+aiosqlite:///{data_dir / 'veilnet.sqlite3'}",
        gateway_url=ports.url(), api_key=None, wallet_path=str(wallet_path),
        block_time=options.block_time or DEFAULT_BLOCK_TIME, tempo=options.tempo or DEFAULT_TEMPO,
        neurons=neurons, instance="", services=[], started_at=time.time(),
    )


def _miner_record(wallet_path: Path, name: str, spec: MinerSpec, axon_url: str) -> NeuronRecord:
    return neuron_record(wallet_path, name, "miner", axon_url=axon_url, model=spec.model, backend=spec.backend,
                         upstream_url=spec.upstream_url, tasks=list(spec.tasks))


def _engines(runtime: DevnetRuntime) -> int:
    """llama.cpp engines the devnet runs: one per embedded-model chat miner, one per validator (its scorer)."""
    return sum(1 for n in runtime.neurons if n.role == "validator" or _runs_engine(n))


def _runs_engine(neuron: NeuronRecord) -> bool:
    return neuron.role == "miner" and neuron.backend == "llamacpp" and "chat" in neuron.tasks


def _assign_threads(settings: Settings, runtime: DevnetRuntime) -> int:
    engines = _engines(runtime)
    threads = settings.llamacpp.model_copy(update={"engines_on_host": engines}).resolved_threads()
    for neuron in runtime.neurons:
        uses_engine = neuron.role == "validator" or _runs_engine(neuron)
        neuron.threads = threads if uses_engine else None
    return engines


async def devnet_up(
    settings: Settings, options: DevnetOptions, progress: Progress, *, supervisor: ProcessRecord | None = None
) -> DevnetRuntime:
    """Start (a new devnet) or resume (the recorded one) every service; return the record once the gateway
    serves. ``supervisor``: the foreground ``up`` process, recorded so ``devnet down`` can end it."""
    data_dir = settings.devnet.data_dir
    with devnet_lock(data_dir, "devnet up"):
        runtime = load_runtime(data_dir)
        if runtime is not None and runtime.running_services():
            raise ConfigError(
                f"a devnet is already running from {data_dir} (gateway {runtime.gateway_url}); "
                "use `veilnet devnet status` or `veilnet devnet down`"
            )
        if runtime is None:
            progress(f"planning a new devnet in {data_dir}")
            runtime = _plan(settings, options)
        else:
            options.check_against(runtime)
            progress(f"resuming the devnet in {data_dir} (subnet {runtime.netuid}, gateway {runtime.gateway_url})")
            if options.block_time is not None:
                runtime.block_time = options.block_time
        runtime.instance = secrets.token_hex(8)
        runtime.supervisor = supervisor
        runtime.services = []
        runtime.ready = False
        runtime.started_at = time.time()
        launcher = Launcher(runtime, ready_timeout=options.ready_timeout, engines_on_host=_assign_threads(settings, runtime))
        save_runtime(runtime)
        try:
            await _start_all(launcher, settings, options, progress)
        except BaseException:
            launcher.stop_started()
            raise
        return runtime


async def _start_all(launcher: Launcher, settings: Settings, options: DevnetOptions, progress: Progress) -> None:
    from veilnet.devnet.chain import DevnetChainClient

    runtime = launcher.runtime
    redis_url = options.redis_url or (settings.redis.url.get_secret_value() if settings.redis.url else None)
    bundled = f"unix://{launcher.data_dir / 'redis' / 'redis.sock'}"
    if redis_url is not None:
        runtime.redis_url = redis_url
    elif runtime.redis_url in ("", bundled):
        progress("starting Redis (bundled redis-server)")
        await launcher.redis()
    progress(f"starting the devnet chain on {runtime.chain_url} (block time {runtime.block_time} s)")
    await launcher.chain()
    async with DevnetChainClient(runtime.chain_url) as chain:
        await ensure_subnet(chain, runtime, progress)
    # before the validators and the gateway start: this migrates the database once (two processes migrating
    # one new SQLite file at once collide), and the gateway finds the key from its first request
    runtime.api_key = await _ensure_api_key(runtime, progress)
    save_runtime(runtime)
    miners = runtime.miners()
    serving = sorted({f"{m.model} ({m.backend})" if m.tasks == ["chat"] else ", ".join(m.tasks) for m in miners})
    progress(f"starting {len(miners)} miner{'s' if len(miners) != 1 else ''}: {', '.join(serving)}; llama.cpp "
             f"threads per engine: {', '.join(sorted({str(n.threads) for n in runtime.neurons if n.threads}))}")
    await launcher.miners(miners)
    progress(f"starting the validators and the gateway on {runtime.gateway_url}")
    await launcher.validators()
    if runtime.gateway_url is not None:
        progress("waiting for the gateway to see a miner")
        await wait_http_ok(f"{runtime.gateway_url}/v1/models", timeout=options.ready_timeout,
                           headers={"Authorization": f"Bearer {runtime.api_key}"})
    runtime.ready = True
    save_runtime(runtime)


async def _ensure_api_key(runtime: DevnetRuntime, progress: Progress) -> str:
    """The recorded API key while the devnet's database still accepts it, else a new one."""
    from veilnet.errors import AuthenticationError
    from veilnet.store.keys import KeyStore
    from veilnet.store.sql import open_database

    async with open_database(runtime.database_url) as engine, KeyStore(engine) as store:
        if runtime.api_key is not None:
            try:
                await store.authenticate(runtime.api_key)
                return runtime.api_key
            except AuthenticationError:
                progress("the recorded API key was revoked or is gone: creating a new one")
        else:
            progress("creating an API key")
        secret, _ = await store.create("devnet", credit_usd=100.0)
        return secret


async def add_miner(settings: Settings, spec: MinerSpec, progress: Progress, *, ready_timeout: float = 180.0) -> NeuronRecord:
    """Register one more miner on the running devnet and start it (recorded with the devnet's services)."""
    from veilnet.devnet.chain import DevnetChainClient

    data_dir = settings.devnet.data_dir
    with devnet_lock(data_dir, "devnet add-miner"):
        runtime = running_devnet(data_dir)
        if runtime is None or not runtime.ready:
            raise ConfigError(f"no running devnet in {data_dir}; start it with `veilnet devnet up`")
        index = 1 + max((int(n.name.rsplit("-", 1)[1]) for n in runtime.miners()), default=-1)
        wallet_path = Path(runtime.wallet_path)
        neuron = _miner_record(wallet_path, f"miner-{index}", spec, f"http://127.0.0.1:{free_port()}")
        runtime.neurons.append(neuron)
        launcher = Launcher(runtime, ready_timeout=ready_timeout, engines_on_host=_engines(runtime))
        if _runs_engine(neuron):
            neuron.threads = settings.llamacpp.model_copy(update={"engines_on_host": _engines(runtime)}).resolved_threads()
        try:
            async with DevnetChainClient(runtime.chain_url) as chain:
                await ensure_subnet(chain, runtime, progress)
            progress(f"starting {neuron.name} on {neuron.axon_url} ({spec.model}, {spec.backend})")
            await launcher.miners([neuron])
        except BaseException:
            launcher.stop_started()
            runtime.neurons.remove(neuron)
            save_runtime(runtime)
            raise
        save_runtime(runtime)
        return neuron


def stop_own_services(data_dir: Path, instance: str, started: list[ServiceRecord]) -> list[str]:
    """What a foreground ``up`` stops when it ends: the services of its own instance (``add-miner``'s
    included) while the record is still its own, else only those it started itself — never the services of
    a devnet another ``up`` started since."""
    runtime = load_runtime(data_dir)
    if runtime is not None and runtime.instance == instance:
        stopped = stop_services(runtime.services)
        runtime.supervisor = None
        save_runtime(runtime)
        return stopped
    return stop_services(started)


def devnet_down(data_dir: Path) -> list[str]:
    """End a foreground ``up`` and stop every recorded service; returns the names stopped."""
    runtime = load_runtime(data_dir)
    if runtime is None:
        return []
    stopped = []
    # the foreground `up` stops its services too; it is not waited for, so a hung or suspended one cannot hold
    # `down`, and it only ever stops services of its own instance
    if runtime.supervisor is not None and terminate(runtime.supervisor):
        stopped.append("devnet up")
    stopped += stop_services(runtime.services)
    runtime.supervisor = None
    save_runtime(runtime)
    return stopped


def devnet_reset(data_dir: Path) -> None:
    """Stop everything and delete the devnet's data directory (chain state, wallets, Redis, database)."""
    devnet_down(data_dir)
    if data_dir.exists():
        if not (data_dir / "devnet.json").exists() and any(data_dir.iterdir()) and not (data_dir / "chain").exists():
            raise ConfigError(f"{data_dir} does not look like a veilnet devnet directory; not deleting it")
        shutil.rmtree(data_dir)
