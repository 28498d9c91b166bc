"""``dashboard_router``: GET /dashboard (self-contained HTML, no CDN) and GET /dashboard/api/snapshot."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from veilnet.dashboard.models import DashboardSnapshot
from veilnet.dashboard.source import DashboardSource

__all__ = ["dashboard_router"]


def dashboard_router(source: DashboardSource) -> APIRouter:
    """Routes for the dashboard page and its JSON snapshot, reading from ``source`` on every request."""
    router = APIRouter()
    page = files("veilnet.dashboard").joinpath("page.html").read_text(encoding="utf-8")

    @router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard_page() -> HTMLResponse:
        return HTMLResponse(page)

    @router.get("/dashboard/api/snapshot", response_model=DashboardSnapshot)
    async def dashboard_snapshot() -> DashboardSnapshot:
        return await source.snapshot()

    return router
