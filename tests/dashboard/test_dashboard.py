"""The dashboard page in a real headless Chromium: it loads, draws its charts, and shows the API's numbers."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from tests.conftest import serve_asgi

from veilnet.dashboard import (
    BreakerState,
    DashboardSnapshot,
    EpochPoint,
    MetagraphRow,
    MinerRequestStats,
    StaticDashboardSource,
    dashboard_router,
)

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
    return DashboardSnapshot(
        netuid=1, block=2900, epoch=8, metagraph=rows, history=history, requests=requests, breakers=breakers
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


@pytest.mark.skipif(
    not shutil.which(CHROMIUM), reason=f"chromium not installed at {CHROMIUM} (apt-get install chromium)"
)
async def test_dashboard_renders_in_chromium() -> None:
    playwright_api = pytest.importorskip(
        "playwright.async_api", reason="playwright not installed (pip install playwright)"
    )
    async with serve_asgi(make_app()) as base, playwright_api.async_playwright() as pw:
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
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            assert errors == []
            for chart in ("score", "incentive", "emission"):
                paths = await page.locator(f"#chart-{chart} path.series").evaluate_all(
                    "els => els.map(e => e.getAttribute('d'))"
                )
                assert len(paths) == 3 and all(d.count("L") == 7 for d in paths)
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
        finally:
            await browser.close()
