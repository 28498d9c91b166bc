from __future__ import annotations

import pytest

from veilnet.chain.types import RAO_PER_TAO, U16_MAX, Metagraph, NeuronInfo
from veilnet.scoring import ScoreState
from veilnet.store.history import ScoreHistory, ScorePoint
from veilnet.store.sql import open_database


async def test_score_history_round_trip(sql_url: str) -> None:
    async with open_database(sql_url) as engine:
        history = ScoreHistory(engine, "validator-hotkey", 1)
        await history.record(1, 100, {"a": ScoreState(ema=0.5, quality=1.0, seen=True)})
        await history.record(2, 140, {"a": ScoreState(ema=0.6, quality=0.9, seen=True),
                                      "b": ScoreState(ema=0.1, seen=True)})
        await history.record(3, 180, {})
        points = await history.series()
        assert [(p.tempo, p.miner, p.score) for p in points] == [(1, "a", 0.5), (2, "a", 0.6), (2, "b", 0.1)]
        assert await ScoreHistory(engine, "other", 1).series() == []
        assert [p.tempo for p in await history.series(limit=2)] == [2, 2]


def _metagraph(block: int, incentive: dict[str, int]) -> Metagraph:
    neurons = tuple(
        NeuronInfo(uid=uid, hotkey=hotkey, coldkey="c", stake=0, axon=None, validator_permit=False,
                   incentive=share, dividends=0, emission=uid * RAO_PER_TAO, consensus=0, validator_trust=0,
                   last_update=0, block_at_registration=0, active=True)
        for uid, (hotkey, share) in enumerate(incentive.items(), start=1)
    )
    return Metagraph(netuid=1, block=block, neurons=neurons)


async def test_history_rows_keep_the_chain_view_of_their_epoch(sql_url: str) -> None:
    """uid, incentive and emission are what the metagraph said at that epoch; without one they are unknown.
    The newest tempos are read back whole, by a new engine as a restarted gateway would."""
    async with open_database(sql_url) as engine:
        history = ScoreHistory(engine, "validator-hotkey", 1)
        await history.record(1, 100, {"a": ScoreState(ema=1.2, seen=True)})  # no metagraph read
        for tempo in (2, 3, 4):
            graph = _metagraph(100 + 40 * tempo, {"a": U16_MAX // tempo, "b": U16_MAX - U16_MAX // tempo})
            await history.record(tempo, graph.block, {"a": ScoreState(ema=0.1 * tempo, seen=True),
                                                      "b": ScoreState(ema=0.05, quality=0.5, seen=True)}, graph)
    async with open_database(sql_url) as engine:
        history = ScoreHistory(engine, "validator-hotkey", 1)
        everything = await history.recent_tempos(100)
        assert everything[0] == ScorePoint(1, 100, "a", 1.2, 1.0, None, None, None)
        newest = await history.recent_tempos(2)
        assert [(p.tempo, p.miner, p.uid) for p in newest] == [(3, "a", 1), (3, "b", 2), (4, "a", 1), (4, "b", 2)]
        assert newest[2].score == pytest.approx(0.4) and newest[2].incentive == pytest.approx(0.25, abs=1e-4)
        assert newest[3].emission == 2.0 and newest[3].quality == 0.5
        assert await ScoreHistory(engine, "validator-hotkey", 2).recent_tempos() == []


async def test_history_from_before_the_chain_columns_upgrades(sql_url: str) -> None:
    from alembic import command
    from sqlalchemy import text

    from veilnet.store.sql import alembic_config

    def to_first_revision(connection: object) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "validator_0001")

    async with open_database(sql_url, run_migrations=False) as engine:
        async with engine.begin() as conn:
            await conn.run_sync(to_first_revision)
            await conn.execute(text(
                "INSERT INTO validator_score_history (validator, netuid, tempo, block, miner, score, quality, "
                "created_at) VALUES ('v', 1, 7, 300, 'a', 0.25, 1.0, 0)"))
    async with open_database(sql_url) as engine:
        history = ScoreHistory(engine, "v", 1)
        assert await history.recent_tempos() == [ScorePoint(7, 300, "a", 0.25, 1.0)]
        await history.record(8, 340, {"a": ScoreState(ema=0.3, seen=True)}, _metagraph(340, {"a": U16_MAX}))
        assert (await history.recent_tempos(1))[0].incentive == 1.0
