"""Request statistics and Prometheus metrics of the gateway, and the dashboard snapshot built from them, the miner
directory and the validator's scores."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from veilnet import cancelling
from veilnet.chain.types import RAO_PER_TAO, Metagraph
from veilnet.dashboard.models import (
    BreakerState,
    DashboardSnapshot,
    EpochPoint,
    MetagraphRow,
    MinerRequestStats,
)
from veilnet.dashboard.tasks import task_views
from veilnet.gateway.breaker import CircuitBreaker
from veilnet.gateway.directory import MinerDirectory
from veilnet.scoring import ScoreState

__all__ = ["GatewayStats"]

WINDOW_SECONDS = 300.0

log = logging.getLogger(__name__)


class GatewayStats:
    """Per-miner request outcomes over a sliding window, exported as ``veilnet_gateway_*`` metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("veilnet_gateway_requests_total", "Requests relayed, by miner and status",
                                ["miner_uid", "status"], registry=self.registry)
        self.duration = Histogram("veilnet_gateway_request_duration_seconds", "Request latency",
                                  ["miner_uid"], registry=self.registry)
        self.tokens = Counter("veilnet_gateway_tokens_total", "Tokens served", ["kind"], registry=self.registry)
        self.breaker_open = Gauge("veilnet_gateway_breaker_open", "1 while a miner's breaker is open",
                                  ["miner_uid"], registry=self.registry)
        self.score = Gauge("veilnet_miner_score", "The validator's score of a miner", ["miner_uid"],
                           registry=self.registry)
        self.attempts = Counter("veilnet_gateway_attempts_total",
                                "Attempts at miners, by miner and whose fault a failed one was (served: none)",
                                ["miner_uid", "outcome"], registry=self.registry)
        self._attempt_children: dict[tuple[str, str | None], Counter] = {}
        # (monotonic time, latency ms, ok, completion tokens) per miner hotkey
        self._samples: dict[str, deque[tuple[float, float, bool, int]]] = defaultdict(lambda: deque(maxlen=10_000))
        self._prompt_tokens = self.tokens.labels(kind="prompt")
        self._completion_tokens = self.tokens.labels(kind="completion")
        # each miner's metric children, looked up once (``labels()`` costs more than the update itself)
        self._children: dict[tuple[str, bool], tuple[Counter, Histogram]] = {}

    def observe(self, hotkey: str, uid: int | None, latency_s: float, ok: bool, prompt_tokens: int = 0,
                completion_tokens: int = 0) -> None:
        label = str(uid) if uid is not None else "none"
        children = self._children.get((label, ok))
        if children is None:
            children = self._children[(label, ok)] = (
                self.requests.labels(miner_uid=label, status="ok" if ok else "error"),
                self.duration.labels(miner_uid=label))
        children[0].inc()
        children[1].observe(latency_s)
        self._prompt_tokens.inc(prompt_tokens)
        self._completion_tokens.inc(completion_tokens)
        self._samples[hotkey].append((time.monotonic(), latency_s * 1000, ok, completion_tokens))

    def attempt(self, hotkey: str, uid: int | None, fault: str | None) -> None:
        """One attempt at a miner ended; ``fault`` is whose fault it was when it failed (None: served)."""
        label = str(uid) if uid is not None else "none"
        child = self._attempt_children.get((label, fault))
        if child is None:
            child = self._attempt_children[(label, fault)] = self.attempts.labels(
                miner_uid=label, outcome=fault or "served")
        child.inc()

    def _window(self, hotkey: str, now: float) -> list[tuple[float, float, bool, int]]:
        return [s for s in self._samples.get(hotkey, ()) if now - s[0] <= WINDOW_SECONDS]

    def latency_p50(self) -> dict[str, float]:
        """Recent median latency (ms) of successful requests per miner."""
        now = time.monotonic()
        out = {}
        for hotkey in list(self._samples):
            ok = [s[1] for s in self._window(hotkey, now) if s[2]]
            if ok:
                out[hotkey] = statistics.median(ok)
        return out

    def throughput(self) -> dict[str, float]:
        """Recent completion tokens per second of request time per miner."""
        now = time.monotonic()
        out = {}
        for hotkey in list(self._samples):
            ok = [s for s in self._window(hotkey, now) if s[2] and s[1] > 0]
            if ok:
                out[hotkey] = sum(s[3] for s in ok) / (sum(s[1] for s in ok) / 1000)
        return out

    def set_gauges(self, graph: Metagraph | None, scores: Mapping[str, float], states: Mapping[str, str]) -> None:
        """``veilnet_miner_score`` and ``veilnet_gateway_breaker_open`` of every miner in the metagraph (a miner
        the metagraph no longer holds keeps its last values)."""
        if graph is None:
            return
        for n in graph.neurons:
            uid = str(n.uid)
            self.score.labels(miner_uid=uid).set(scores.get(n.hotkey, 0.0))
            self.breaker_open.labels(miner_uid=uid).set(1 if states.get(n.hotkey, "closed") != "closed" else 0)

    async def refresh_gauges_forever(self, directory: MinerDirectory, breaker: CircuitBreaker,
                                     scores: Callable[[], Awaitable[dict[str, float]]], seconds: float) -> None:
        """Keep the score and breaker gauges current every ``seconds`` (a failed read of the scores keeps the
        last values and is tried again next time), so a scrape of /metrics sees them whether or not anyone
        opens the dashboard."""
        while True:
            cancelling.raise_if_stopping()
            try:
                self.set_gauges(directory.metagraph, await scores(), breaker.states())
            except Exception:  # the scores' store is down: the gauges keep their last values
                log.warning("could not refresh the score and breaker gauges", exc_info=True)
            await asyncio.sleep(seconds)

    def snapshot_source(
        self, directory: MinerDirectory, breaker: CircuitBreaker, netuid: int,
        scores: Callable[[], Awaitable[dict[str, float]]],
        history: Callable[[], Awaitable[list[EpochPoint]]] | None = None,
        score_states: Callable[[], Awaitable[Mapping[str, ScoreState]]] | None = None,
        units: Mapping[str, str] | None = None,
    ) -> Callable[[], Awaitable[DashboardSnapshot]]:
        """An async callable building the dashboard snapshot (a ``DashboardSource.snapshot``); ``history``
        gives the per-epoch points (the validator's score history in SQL, ``dashboard.EpochHistory``);
        ``score_states`` the validator's score states (``LatestScores.states``), whose per-task figures the task
        view shows beside what each miner offers per task; ``units`` each installed task's unit."""

        async def snapshot() -> DashboardSnapshot:
            graph = directory.metagraph
            now = time.monotonic()
            current = await scores()
            points = await history() if history is not None else []
            stored = await score_states() if score_states is not None else {}
            uids = {n.hotkey: n.uid for n in graph.neurons} if graph is not None else {}
            tasks = task_views(directory.offered_tasks(), stored, uids, units or {})
            rows, requests, breakers = [], [], []
            states = breaker.states()
            if graph is not None:
                for n in graph.neurons:
                    rows.append(MetagraphRow(uid=n.uid, hotkey=n.hotkey, stake=n.stake / RAO_PER_TAO,
                                             incentive=n.incentive_f, dividends=n.dividends_f,
                                             emission=n.emission / RAO_PER_TAO, validator_permit=n.validator_permit,
                                             axon=n.axon.url if n.axon and n.axon.is_served else None))
                    window = self._window(n.hotkey, now)
                    if window:
                        latencies = sorted(s[1] for s in window)
                        span = max(now - window[0][0], 1.0)
                        requests.append(MinerRequestStats(
                            uid=n.uid, hotkey=n.hotkey, rps=len(window) / span,
                            p50_ms=statistics.median(latencies),
                            p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
                            errors=sum(1 for s in window if not s[2])))
                    if n.hotkey in states:
                        breakers.append(BreakerState(uid=n.uid, hotkey=n.hotkey, state=states[n.hotkey]))  # type: ignore[arg-type]
            self.set_gauges(graph, current, states)
            return DashboardSnapshot(netuid=netuid, block=graph.block if graph else 0,
                                     epoch=max((p.epoch for p in points), default=0),
                                     metagraph=rows, history=points, requests=requests, breakers=breakers,
                                     tasks=tasks)

        return snapshot
