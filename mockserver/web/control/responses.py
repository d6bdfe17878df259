"""``/responses``: canned responses, answered to the provider requests they match."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..http import JSONResponse
from .common import Routes


class CannedResponses(Routes):
    """List canned responses, add one, delete one or all."""

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/responses", self.listing, methods=["GET"]),
            Route("/responses", self.add, methods=["POST"]),
            Route("/responses", self.clear, methods=["DELETE"]),
            Route("/responses/{response_id}", self.delete, methods=["DELETE"]),
        ]

    async def listing(self, request: Request) -> Response:
        return JSONResponse({"responses": [r.to_dict() for r in await self.control.canned_listing()]})

    async def add(self, request: Request) -> Response:
        body = await self.body(request, "CannedRequest")
        response = await self.control.add_canned_response(body, self.account_of(body))
        return JSONResponse(response.to_dict())

    async def clear(self, request: Request) -> Response:
        await self.control.clear_canned_responses()
        return JSONResponse({"deleted": "all"})

    async def delete(self, request: Request) -> Response:
        response_id = request.path_params["response_id"]
        await self.control.delete_canned_response(response_id)
        return JSONResponse({"deleted": response_id})
