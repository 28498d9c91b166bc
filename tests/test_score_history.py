from __future__ import annotations

from veilnet.scoring import ScoreState
from veilnet.store.history import ScoreHistory
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
