"""``/ledger`` and ``/balances``: what the fake charged, and setting an account's balance."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...core.errors import bad_request
from ..http import JSONResponse
from .common import Routes, whole


class Ledger(Routes):
    """Read the ledger (one account's or all, paged); set a balance (the account must be named)."""

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/ledger", self.ledger, methods=["GET"]),
            Route("/balances", self.balances, methods=["POST"]),
        ]

    async def ledger(self, request: Request) -> Response:
        q = request.query_params
        found = await self.control.ledger(
            self.account_of(q), offset=whole(q, "offset", 0) or 0, limit=whole(q, "limit")
        )
        return JSONResponse(found)

    async def balances(self, request: Request) -> Response:
        body = await self.body(request, "BalanceChange")
        account = self.account_of(body)
        if account is None:
            raise bad_request("name the account by token or account", "token")
        await self.control.set_balance(account, body["balance"])
        return JSONResponse({"account": account, "balance": body["balance"]})
