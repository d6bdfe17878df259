"""The dashboard page and its files, the plane's health, and its OpenAPI document."""

from __future__ import annotations

import os
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ...control import ControlPlane
from ...core.spec import Spec
from ..http import JSONResponse
from .common import Routes
from .guard import dashboard_headers

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"


class Site(Routes):
    """``/`` (the dashboard), ``/dashboard/…``, ``/health`` and ``/openapi.json``."""

    def __init__(self, control: ControlPlane, spec: Spec) -> None:
        super().__init__(control, spec)
        self.page_headers = dashboard_headers(control.settings.public_url)

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/", self.dashboard, methods=["GET"]),
            Mount("/dashboard", app=StaticFiles(directory=DASHBOARD, check_dir=False)),
            Route("/health", self.health, methods=["GET"]),
            Route("/openapi.json", self.openapi, methods=["GET"]),
        ]

    async def dashboard(self, request: Request) -> Response:
        return FileResponse(DASHBOARD / "index.html", media_type="text/html", headers=self.page_headers)

    async def health(self, request: Request) -> Response:
        found = await self.fake.health()  # {"status": "ok" | "unhealthy", "store": "ok" | why not}
        body = {**found, "pid": os.getpid(), "state": self.fake.settings.state.split("://")[0]}
        return JSONResponse(body, 200 if found["status"] == "ok" else 503)

    async def openapi(self, request: Request) -> Response:
        return Response(self.spec.json_bytes, media_type="application/json")
