"""``/accounts/{account}``: the settings one account chose for itself (its task dialect), read or changed."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..http import JSONResponse
from .common import Routes


class Accounts(Routes):
    """The path names the account by its id (``acct_…``) or by its token."""

    def routes(self) -> list[BaseRoute]:
        return [Route("/accounts/{account}", self.settings, methods=["GET", "POST"])]

    async def settings(self, request: Request) -> Response:
        account = self.named_account(request.path_params["account"])
        if request.method == "GET":
            return JSONResponse({"account": account, "settings": self.fake.account_settings(account)})
        changes = await self.body(request, "AccountSettings")
        return JSONResponse({"account": account, "settings": await self.control.configure_account(account, changes)})
