"""The dashboard page in a real headless Chromium: it loads, draws its charts, and shows the API's numbers; its
per-task view lists each task's miners (plugins' tasks alike) with the validator's stored figures, built by a
real gateway from its miners' capacity documents (loopback HTTP) and the scores in real Redis."""

from __future__ import annotations

import contextlib
import itertools
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import redis.asyncio as aioredis
from bittensor_wallet import Keypair
from fastapi import FastAPI
from tests.conftest import serve_asgi
from tests.miner.conftest import neuron, served_neuron

from veilnet.chain.types import Metagraph
from veilnet.dashboard import (
    BreakerState,
    DashboardSnapshot,
    EpochPoint,
    MetagraphRow,
    MinerRequestStats,
    StaticDashboardSource,
    TaskMinerRow,
    TaskView,
    dashboard_router,
)
from veilnet.gateway import GatewayContext, create_gateway_app
from veilnet.gateway.directory import MinerDirectory
from veilnet.protocol import paths
from veilnet.protocol.capacity import CapacityDocument, ModelOffer
from veilnet.relay import RelayClient
from veilnet.scoring import Observation, ScoreState, update_scores
from veilnet.store.keys import KeyStore
from veilnet.store.scores import LatestScores, ScoreStore
from veilnet.store.sql import open_database

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
HOTKEYS = ["5F" + c * 46 for c in "ABCD"]


def make_snapshot() -> DashboardSnapshot:
    rows = [
        MetagraphRow(
            uid=0,
            hotkey=HOTKEYS[0],
            stake=1000.0,
            incentive=0.0,
            dividends=1.0,
            emission=0.5,
            validator_permit=True,
            axon=None,
        ),
    ] + [
        MetagraphRow(
            uid=u,
            hotkey=HOTKEYS[u],
            stake=10.0 * u,
            incentive=round(0.2 * u, 4),
            dividends=0.0,
            emission=round(0.1 * u, 4),
            validator_permit=False,
            axon=f"http://10.0.0.{u}:8091",
        )
        for u in (1, 2, 3)
    ]
    history = [
        EpochPoint(
            epoch=e,
            block=360 * e,
            hotkey=HOTKEYS[u],
            uid=u,
            incentive=0.1 * u + 0.01 * e,
            emission=0.05 * u * e,
            score=min(1.0, 0.2 * u + 0.05 * e),
        )
        for e in range(1, 9)
        for u in (1, 2, 3)
    ]
    requests = [
        MinerRequestStats(
            uid=u, hotkey=HOTKEYS[u], rps=1.5 * u, p50_ms=100.0 * u, p99_ms=250.0 * u, errors=u - 1
        )
        for u in (1, 2, 3)
    ]
    breakers = [
        BreakerState(uid=1, hotkey=HOTKEYS[1], state="closed"),
        BreakerState(uid=2, hotkey=HOTKEYS[2], state="half_open"),
        BreakerState(uid=3, hotkey=HOTKEYS[3], state="open"),
    ]
    tasks = [
        TaskView(task="acme-translate", unit=None, miners=[
            TaskMinerRow(uid=3, hotkey=HOTKEYS[3], models=["acme-mt-1"], quality=0.95, throughput=3.0, share=1.0)]),
        TaskView(task="chat", unit="token", miners=[
            TaskMinerRow(uid=2, hotkey=HOTKEYS[2], models=["SmolLM2-135M-Instruct"], quality=None, throughput=16.0,
                         share=0.625),
            TaskMinerRow(uid=1, hotkey=HOTKEYS[1], models=["SmolLM2-135M-Instruct"], quality=0.9, throughput=32.0,
                         share=0.375)]),
        TaskView(task="ocr", unit="image", miners=[
            TaskMinerRow(uid=1, hotkey=HOTKEYS[1], models=["PP-OCRv4"], quality=0.6, throughput=2.0, share=0.8125),
            TaskMinerRow(uid=None, hotkey="5Gone" + "z" * 43, models=[], quality=1.0, throughput=1.0, share=0.1875)]),
    ]
    return DashboardSnapshot(
        netuid=1, block=2900, epoch=8, metagraph=rows, history=history, requests=requests, breakers=breakers,
        tasks=tasks,
    )


def make_app() -> FastAPI:
    app = FastAPI()
    app.include_router(dashboard_router(StaticDashboardSource(make_snapshot())))
    return app


async def test_snapshot_api_round_trips() -> None:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/dashboard/api/snapshot")
        page = await client.get("/dashboard")
    assert response.status_code == 200
    assert DashboardSnapshot.model_validate(response.json()) == make_snapshot()
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "http://" not in page.text.replace("http://www.w3.org/2000/svg", "")  # no CDN


needs_chromium = pytest.mark.skipif(
    not shutil.which(CHROMIUM), reason=f"chromium not installed at {CHROMIUM} (apt-get install chromium)"
)


@contextlib.asynccontextmanager
async def dashboard_page(snapshot: DashboardSnapshot) -> AsyncIterator[tuple[Any, str]]:
    """The dashboard of ``snapshot`` loaded in headless Chromium (no page errors); yields the page and base URL."""
    app = FastAPI()
    app.include_router(dashboard_router(StaticDashboardSource(snapshot)))
    async with serve_asgi(app) as base, browse(base) as page:
        yield page, base


@contextlib.asynccontextmanager
async def browse(base: str) -> AsyncIterator[Any]:
    """``base``/dashboard loaded in headless Chromium; the page must raise no error while in use."""
    playwright_api = pytest.importorskip(
        "playwright.async_api", reason="playwright not installed (pip install playwright)"
    )
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{base}/dashboard")
            await page.wait_for_selector("body[data-loaded='1']", timeout=10_000)
            yield page
            assert errors == []
        finally:
            await browser.close()


@needs_chromium
async def test_dashboard_renders_in_chromium() -> None:
    async with dashboard_page(make_snapshot()) as (page, base):
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        for chart in ("score", "incentive", "emission"):
            paths = await page.locator(f"#chart-{chart} path.series").evaluate_all(
                "els => els.map(e => e.getAttribute('d'))"
            )
            assert len(paths) == 3 and all(d.count("L") == 7 for d in paths)
        assert await page.locator("#history-legend span").all_text_contents() == ["uid 1", "uid 2", "uid 3"]
        assert await page.locator("#chart-rps rect.bar").count() == 3
        assert await page.locator("#chart-latency rect.bar").count() == 6

        api = (await httpx.AsyncClient().get(f"{base}/dashboard/api/snapshot")).json()
        cells = await page.locator("#metagraph tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
        )
        assert len(cells) == len(api["metagraph"])
        for row, want in zip(cells, api["metagraph"], strict=True):
            assert int(row[0]) == want["uid"]
            assert float(row[2]) == pytest.approx(want["stake"])
            assert float(row[3]) == pytest.approx(want["incentive"])
            assert float(row[5]) == pytest.approx(want["emission"])
            assert row[6] == ("yes" if want["validator_permit"] else "no")
        states = await page.locator("#breakers tbody td:nth-child(3)").all_text_contents()
        assert states == [b["state"] for b in api["breakers"]]
        assert await page.locator("#block").text_content() == str(api["block"])


# every text of every chart: its box within the chart's (an SVG clips what lies outside)
CLIPPED_TEXTS = """() => [...document.querySelectorAll("svg.chart")].flatMap(svg => {
  const w = +svg.getAttribute("width"), h = +svg.getAttribute("height");
  return [...svg.querySelectorAll("text")].map(t => t.getBBox()).filter(b =>
    b.x < 0 || b.y < 0 || b.x + b.width > w || b.y + b.height > h).map(b => [svg.id, b.x, b.y, b.width]);
})"""


def crowded_snapshot(top_score: float) -> DashboardSnapshot:
    """Twenty miners, emission in the tens of thousands of TAO, scores up to ``top_score``."""
    hotkeys = [f"5H{i:02d}" + "x" * 44 for i in range(20)]
    history = [
        EpochPoint(epoch=e, block=40 * e, hotkey=h, uid=u + 1, incentive=1 / 20, emission=12_345.678 * (u + 1),
                   score=top_score * (u + 1) / 20)
        for e in range(100, 130) for u, h in enumerate(hotkeys)
    ]
    requests = [MinerRequestStats(uid=u + 1, hotkey=h, rps=1000.5 * u, p50_ms=12_000.0, p99_ms=98_765.4, errors=0)
                for u, h in enumerate(hotkeys)]
    return DashboardSnapshot(netuid=3, block=5200, epoch=129, history=history, requests=requests)


@needs_chromium
@pytest.mark.parametrize("top_score", [0.3, 1.2])
async def test_axis_labels_are_not_clipped_and_scores_keep_their_scale(top_score: float) -> None:
    async with dashboard_page(crowded_snapshot(top_score)) as (page, _):
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / f"dashboard-crowded-{top_score}.png"), full_page=True)
        assert await page.evaluate(CLIPPED_TEXTS) == []
        assert await page.locator("#history-legend span").count() == 20
        # the score axis runs from 0 to at least 1 (the stored scale), never stretched to the largest score
        ticks = await page.locator("#chart-score text[dominant-baseline='middle']").all_text_contents()
        assert ticks[0] == "0" and float(ticks[-1]) == max(1.0, top_score)
        # bar labels never overlap
        boxes = await page.locator("#chart-rps text[text-anchor='middle']").evaluate_all(
            "els => els.map(e => { const b = e.getBBox(); return [b.x, b.x + b.width]; })")
        assert 1 < len(boxes) < 20
        assert all(left[1] < right[0] for left, right in itertools.pairwise(boxes))


# the task view as drawn: one section per task, its table's header and cells
TASK_TABLES = """() => [...document.querySelectorAll("#tasks section")].map(sec => ({
  task: sec.dataset.task, heading: sec.querySelector("h3").textContent, visible: sec.offsetParent !== null,
  head: [...sec.querySelectorAll("th")].map(th => th.textContent),
  rows: [...sec.querySelectorAll("tbody tr")].map(r => [...r.cells].map(c => c.textContent))}))"""


async def drawn_tasks(page: Any, api: dict[str, Any]) -> dict[str, list[list[str]]]:
    """Checks the page's task tables and its metagraph's tasks column against the API's snapshot ``api``;
    returns each task's drawn rows by task."""
    tables = await page.evaluate(TASK_TABLES)
    assert [t["task"] for t in tables] == [t["heading"] for t in tables] == [v["task"] for v in api["tasks"]]
    for table, view in zip(tables, api["tasks"], strict=True):
        assert table["head"] == ["uid", "hotkey", "models", "quality", f"throughput ({view['unit'] or 'units'}/s)",
                                 "share"]
        assert len(table["rows"]) == len(view["miners"])
        for row, miner in zip(table["rows"], view["miners"], strict=True):
            assert row[0] == ("-" if miner["uid"] is None else str(miner["uid"]))
            assert row[2] == (", ".join(miner["models"]) or "(none offered)")
            for cell, key in zip(row[3:], ("quality", "throughput", "share"), strict=True):
                if miner[key] is None:
                    assert cell == "-"
                else:
                    assert float(cell) == pytest.approx(miner[key], abs=5e-5)
    served: dict[str, list[str]] = {}
    for view in api["tasks"]:
        for miner in view["miners"]:
            if miner["models"]:
                served.setdefault(miner["hotkey"], []).append(view["task"])
    column = await page.locator("#metagraph tbody td:nth-child(9)").all_text_contents()
    assert column == [", ".join(served.get(r["hotkey"], [])) or "-" for r in api["metagraph"]]
    return {t["task"]: t["rows"] for t in tables}


@needs_chromium
async def test_task_view_lists_each_tasks_miners_and_filters_by_task() -> None:
    async with dashboard_page(make_snapshot()) as (page, base):
        api = (await httpx.AsyncClient().get(f"{base}/dashboard/api/snapshot")).json()
        rows = await drawn_tasks(page, api)
        # a miner serving only one task is absent from the others' tables; a plugin's task has its own table
        assert {task: [r[0] for r in drawn] for task, drawn in rows.items()} == {
            "acme-translate": ["3"], "chat": ["2", "1"], "ocr": ["1", "-"]}
        assert rows["ocr"][1][2] == "(none offered)" and rows["chat"][0][3] == "-"  # no verified chat answer
        assert await page.locator("#metagraph tbody tr:nth-child(2) td:nth-child(9)").text_content() == "chat, ocr"

        await page.select_option("#task-filter", "ocr")
        assert [t["task"] for t in await page.evaluate(TASK_TABLES) if t["visible"]] == ["ocr"]
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard-tasks-ocr.png"), full_page=True)
        # the choice survives a refresh of the snapshot; "all tasks" shows every table again
        await page.evaluate("refresh()")
        assert [t["task"] for t in await page.evaluate(TASK_TABLES) if t["visible"]] == ["ocr"]
        await page.select_option("#task-filter", "")
        assert len([t for t in await page.evaluate(TASK_TABLES) if t["visible"]]) == 3


GATEWAY = Keypair.create_from_uri("//DashGateway")
BOTH, CHAT_ONLY, PLUGIN, GONE = (Keypair.create_from_uri(f"//Dash{name}") for name in ("Both", "Chat", "Plugin", "Gone"))
CHAT_MODEL = "SmolLM2-135M-Instruct"


def capacity_app(key: Keypair, *offers: ModelOffer) -> FastAPI:
    """A miner's /capacity as the gateway's directory reads it."""
    app = FastAPI()
    document = CapacityDocument(hotkey=key.ss58_address, models=list(offers))

    @app.get(paths.CAPACITY)
    async def capacity() -> CapacityDocument:
        return document

    return app


def offer(model: str, task: str, *, embeddings: bool = False) -> ModelOffer:
    return ModelOffer(id=model, capacity_per_window=10, price_input_per_million=1.0, price_output_per_million=2.0,
                      context_length=2048, embeddings=embeddings, task=task)


def answered(key: Keypair, task: str, *, units: int, seconds: float, quality: float | None = None) -> Observation:
    return Observation(miner=key.ss58_address, model="m", task=task, outcome="ok", units=units,
                       elapsed_ms=seconds * 1000, verified=None if quality is None else True, quality=quality)


def probed(key: Keypair, task: str, *, units: int, seconds: float) -> Observation:
    """What a probe window of ``seconds`` measured: ``units`` delivered inside it."""
    return Observation(miner=key.ss58_address, model="m", task=task, outcome="ok", kind="probe", probe="r",
                       units=units, elapsed_ms=seconds * 1000, window_ms=seconds * 1000)


def two_tempos() -> dict[str, ScoreState]:
    """The validator's states after two tempos: BOTH serves chat (with embeddings) and OCR, CHAT_ONLY chat,
    PLUGIN a plugin's task; GONE served OCR in the first tempo only."""
    served = [probed(BOTH, "chat", units=64, seconds=2), probed(CHAT_ONLY, "chat", units=32, seconds=2),
              probed(BOTH, "embeddings", units=8, seconds=1), answered(BOTH, "chat", units=32, seconds=1, quality=0.9),
              answered(CHAT_ONLY, "chat", units=32, seconds=2),
              probed(BOTH, "ocr", units=4, seconds=2), answered(BOTH, "ocr", units=1, seconds=0.5, quality=0.6),
              probed(PLUGIN, "acme-translate", units=6, seconds=2),
              answered(PLUGIN, "acme-translate", units=3, seconds=1, quality=0.95)]
    gone = [probed(GONE, "ocr", units=2, seconds=2), answered(GONE, "ocr", units=1, seconds=1, quality=1.0)]
    states = update_scores({}, [*served, *gone], tempo=1)
    return update_scores(states, served, tempo=2)


async def test_gateway_shows_each_tasks_miners_with_the_validators_stored_figures(
        sql_url: str, redis_client: aioredis.Redis) -> None:
    await ScoreStore(redis_client, GATEWAY.ss58_address, 1).save(two_tempos(), 2)
    async with contextlib.AsyncExitStack() as stack:
        urls = {key: await stack.enter_async_context(serve_asgi(capacity_app(key, *offers))) for key, offers in (
            (BOTH, (offer(CHAT_MODEL, "chat", embeddings=True), offer("PP-OCRv4", "ocr"))),
            (CHAT_ONLY, (offer(CHAT_MODEL, "chat"),)),
            (PLUGIN, (offer("acme-mt-1", "acme-translate"),)))}
        http = await stack.enter_async_context(aiohttp.ClientSession())
        directory = MinerDirectory(http, GATEWAY.ss58_address)
        await directory.refresh(Metagraph(1, 500, (
            neuron(0, GATEWAY, 1000, True), served_neuron(1, BOTH, urls[BOTH]),
            served_neuron(2, CHAT_ONLY, urls[CHAT_ONLY]), served_neuron(3, PLUGIN, urls[PLUGIN]),
            neuron(4, GONE, 0, False))))
        scores = await stack.enter_async_context(LatestScores(ScoreStore(redis_client, GATEWAY.ss58_address, 1)))
        keys = await stack.enter_async_context(KeyStore(await stack.enter_async_context(open_database(sql_url))))
        ctx = GatewayContext(keypair=GATEWAY, keys=keys, directory=directory, http=http, scores=scores,
                             score_states=scores.states, relay=await stack.enter_async_context(RelayClient()))
        base = await stack.enter_async_context(serve_asgi(create_gateway_app(ctx), lifespan="off"))
        async with httpx.AsyncClient() as client:
            api = (await client.get(f"{base}/dashboard/api/snapshot")).json()
        snapshot = DashboardSnapshot.model_validate(api)

        stored = (await ScoreStore(redis_client, GATEWAY.ss58_address, 1).load())[0]
        views = {view.task: view for view in snapshot.tasks}
        uids = {view.task: [m.uid for m in view.miners] for view in snapshot.tasks}
        # each task lists who serves it (a miner serving one task is absent from the others'), the largest
        # share first; GONE offers OCR no more but still holds a share of it
        assert uids == {"acme-translate": [3], "chat": [2, 1], "embeddings": [1], "ocr": [1, 4]}
        assert {v.task: v.unit for v in snapshot.tasks} == {
            "acme-translate": None, "chat": "token", "embeddings": "input", "ocr": "image"}
        assert [m.models for m in views["ocr"].miners] == [["PP-OCRv4"], []]
        assert views["embeddings"].miners[0].models == [CHAT_MODEL]  # its chat model is also served on /v1/embeddings
        for view in snapshot.tasks:
            for row in view.miners:
                state = stored[row.hotkey]
                assert (row.quality, row.throughput, row.share) == (
                    state.tasks[view.task].quality, state.throughput[view.task], state.tasks[view.task].share)
        # the figures are the task's own: BOTH's quality differs per task, and the task's shares sum to 1
        assert [views["chat"].miners[1].quality, views["ocr"].miners[0].quality] == [0.9, 0.6]
        assert views["chat"].miners[0].quality is None  # CHAT_ONLY's answers were never verified
        assert views["acme-translate"].miners[0].share == 1.0 and views["acme-translate"].miners[0].throughput == 3.0
        for task in ("chat", "ocr"):
            assert sum(m.share or 0.0 for m in views[task].miners) == pytest.approx(1.0)
        assert [r.uid for r in snapshot.metagraph] == [0, 1, 2, 3, 4]  # the fields consumers read are there

        if shutil.which(CHROMIUM):
            async with browse(base) as page:
                rows = await drawn_tasks(page, api)
                assert [r[0] for r in rows["ocr"]] == ["1", "4"]
