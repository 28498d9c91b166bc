"""The dashboard's per-epoch history is the validator's score history in SQL: there from the first epoch, the
same after the gateway restarts, with scores exactly as stored."""

from __future__ import annotations

import aiohttp

from veilnet.dashboard import EpochHistory, EpochPoint
from veilnet.gateway.directory import MinerDirectory
from veilnet.gateway.routing import CircuitBreaker
from veilnet.gateway.stats import GatewayStats
from veilnet.scoring import ScoreState
from veilnet.store.history import ScoreHistory
from veilnet.store.sql import open_database


async def _scores() -> dict[str, float]:
    return {}


async def test_gateway_snapshot_history_comes_from_sql(sql_url: str) -> None:
    async with open_database(sql_url) as engine:
        written = ScoreHistory(engine, "validator", 1)
        for tempo in range(1, 6):
            await written.record(tempo, 40 * tempo, {"miner-a": ScoreState(ema=1.2, seen=True),
                                                     "miner-b": ScoreState(ema=0.02 * tempo, seen=True)})
        await ScoreHistory(engine, "another-validator", 1).record(9, 400, {"miner-a": ScoreState(ema=0.9, seen=True)})

    # a gateway started after those epochs (none of them happened while it ran) shows them all
    async with open_database(sql_url) as engine, aiohttp.ClientSession() as http:
        history = EpochHistory(ScoreHistory(engine, "validator", 1), tempos=3)
        snapshot = await GatewayStats().snapshot_source(MinerDirectory(http, "validator"), CircuitBreaker(), 1,
                                                        _scores, history)()
    assert snapshot.epoch == 5
    assert [(p.epoch, p.hotkey) for p in snapshot.history] == [
        (3, "miner-a"), (3, "miner-b"), (4, "miner-a"), (4, "miner-b"), (5, "miner-a"), (5, "miner-b")]
    assert snapshot.history[-1] == EpochPoint(epoch=5, block=200, hotkey="miner-b", uid=None, incentive=None,
                                              emission=None, score=0.1)
    assert {p.score for p in snapshot.history if p.hotkey == "miner-a"} == {1.2}  # as stored, not rescaled
