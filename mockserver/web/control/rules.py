"""``/scenarios``: the fault catalogue and the rules that inject faults into provider requests."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...core import faults
from ..http import JSONResponse
from .common import Routes


class FaultRules(Routes):
    """List the catalogue and the rules, add a rule, delete one or all."""

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/scenarios", self.listing, methods=["GET"]),
            Route("/scenarios", self.add, methods=["POST"]),
            Route("/scenarios", self.clear, methods=["DELETE"]),
            Route("/scenarios/{rule_id}", self.delete, methods=["DELETE"]),
        ]

    async def listing(self, request: Request) -> Response:
        catalogue = [
            {"name": k.name, "summary": k.summary, "params": dict(k.params), "task": k.task}
            for k in faults.CATALOGUE.values()
        ]
        return JSONResponse({"catalogue": catalogue, "rules": [r.to_dict() for r in await self.control.rule_listing()]})

    async def add(self, request: Request) -> Response:
        body = await self.body(request, "RuleRequest")
        rule = await self.control.add_fault_rule(
            body["scenario"],
            body.get("params"),
            endpoint=body.get("endpoint", "any"),
            account=self.account_of(body),
            fields=body.get("fields"),
            times=body.get("times"),
            probability=body.get("probability", 1.0),
        )
        return JSONResponse(rule.to_dict())

    async def clear(self, request: Request) -> Response:
        await self.control.clear_fault_rules()
        return JSONResponse({"deleted": "all"})

    async def delete(self, request: Request) -> Response:
        rule_id = request.path_params["rule_id"]
        await self.control.delete_fault_rule(rule_id)
        return JSONResponse({"deleted": rule_id})
