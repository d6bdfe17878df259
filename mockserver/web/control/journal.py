"""``/requests``: the journal of provider requests, filtered, as HAR, and checked (verify)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...core import har, matching
from ..http import JSONResponse
from .common import Routes, flag, whole


class Journal(Routes):
    """Read the journal (a cursor and filters), export it as HAR, verify what it holds."""

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/requests", self.listing, methods=["GET"]),
            Route("/requests.har", self.har, methods=["GET"]),
            Route("/requests/verify", self.verify, methods=["POST"]),
        ]

    async def listing(self, request: Request) -> Response:
        q = request.query_params
        entries = await self.control.journal(
            whole(q, "since", 0) or 0,
            method=q.get("method"),
            path=q.get("path"),
            account=self.account_of(q),
            status=whole(q, "status"),
            limit=whole(q, "limit"),
            refused=flag(q, "refused"),
        )
        return JSONResponse({"requests": entries})

    async def verify(self, request: Request) -> Response:
        body = await self.body(request, "Verification")
        expectation = matching.Expectation(
            method=body.get("method"),
            path=body.get("path"),
            json_contains=body.get("json_contains"),
            account=self.account_of(body),
            status=body.get("status"),
        )
        return JSONResponse(await self.control.verify(expectation, body.get("times"), body.get("since", 0)))

    async def har(self, request: Request) -> Response:
        base = str(request.base_url).rstrip("/").removesuffix("/__mock__")
        return JSONResponse(har.document(await self.control.journal(), base), headers={"content-disposition": "inline"})
