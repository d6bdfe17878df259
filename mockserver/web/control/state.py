"""``/state`` and ``/reset``: the fake's whole state exported or imported, or wiped."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..http import JSONResponse
from .common import Routes, flag


class State(Routes):
    """``GET /state`` exports (uploads' bytes on request), ``PUT /state`` imports, ``POST /reset``
    wipes one account or all."""

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/reset", self.reset, methods=["POST"]),
            Route("/state", self.state, methods=["GET", "PUT"]),
        ]

    async def reset(self, request: Request) -> Response:
        account = self.account_of(await self.body(request, "AccountRef"))
        await self.control.reset(account)
        return JSONResponse({"reset": account or "all"})

    async def state(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(
                await self.control.export_state(upload_data=bool(flag(request.query_params, "upload_data")))
            )
        return JSONResponse({"imported": await self.control.import_state(await self.body(request, "State"))})
