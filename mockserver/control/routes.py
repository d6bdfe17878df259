"""``/__mock__/`` routes: the fake's own knobs, apart from the provider's API.

Bodies are validated with ``spec/control.yaml``, the control plane's own
OpenAPI document (served at ``/__mock__/openapi.json``). Control requests need
no provider token; ``--no-control`` switches the whole plane off.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import ledger, lifecycle, scenarios
from ..errors import NOT_FOUND, ApiError, bad_request
from ..http import EXCEPTION_HANDLERS, account_id
from ..jsonio import JSONResponse
from ..spec import CONTROL, Spec

if TYPE_CHECKING:
    from ..context import Context
    from ..records import TaskRecord


async def _body(request: Request, spec: Spec, schema: str) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise bad_request(f"malformed JSON: {exc}") from None
    spec.check(schema, body)
    result: dict[str, Any] = body
    return result


def _account(values: Any) -> str | None:
    """An account named by ``account`` (its id) or ``token`` (the bearer token)."""
    token = values.get("token")
    return account_id(token) if token else values.get("account")


def _internal(record: TaskRecord, now: float) -> dict[str, Any]:
    view = lifecycle.view(record, now)
    return {
        "record": {**record.to_dict(), "charge": record.charge},
        "view": {
            "status": view.status.value,
            "progress": view.progress,
            "started_at": view.started_at,
            "finished_at": view.finished_at,
        },
    }


def control_app(ctx: Context) -> Starlette:
    spec = Spec(name=CONTROL)
    store, clock = ctx.store, ctx.clock

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "pid": os.getpid(), "state": ctx.settings.state.split("://")[0]})

    async def openapi(request: Request) -> Response:
        return Response(spec.json_bytes, media_type="application/json")

    async def reset(request: Request) -> Response:
        account = _account(await _body(request, spec, "AccountRef"))
        store.reset(account)
        return JSONResponse({"reset": account or "all"})

    def clock_state() -> dict[str, Any]:
        return {"now": clock.now(), "frozen": bool(getattr(clock, "frozen", True))}

    async def clock_route(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(clock_state())
        body = await _body(request, spec, "ClockChange")
        try:
            if body.get("freeze") is True and hasattr(clock, "freeze"):
                clock.freeze()
            elif body.get("freeze") is False and hasattr(clock, "unfreeze"):
                clock.unfreeze()
            if body.get("advance") is not None:
                clock.advance(float(body["advance"]))  # type: ignore[attr-defined]
            if body.get("set") is not None:
                clock.set(float(body["set"]))  # type: ignore[attr-defined]
        except AttributeError:
            raise ApiError(409, "this server's clock cannot be moved", param=None) from None
        except ValueError as exc:
            raise bad_request(str(exc), "set") from None
        return JSONResponse(clock_state())

    async def list_scenarios(request: Request) -> Response:
        catalogue = [
            {"name": k.name, "summary": k.summary, "params": dict(k.params), "task": k.task}
            for k in scenarios.CATALOGUE.values()
        ]
        return JSONResponse({"catalogue": catalogue, "rules": [r.to_dict() for r in store.rules()]})

    async def add_scenario(request: Request) -> Response:
        body = await _body(request, spec, "RuleRequest")
        scenario = scenarios.parse(body["scenario"], "scenario")
        if body.get("params"):
            text = "; ".join([body["scenario"], *(f"{k}={v}" for k, v in body["params"].items())])
            scenario = scenarios.parse(text, "scenario")
        rule = scenarios.Rule(
            id=ctx.new_id("rule"),
            scenario=scenario,
            endpoint=body.get("endpoint", "any"),
            account=_account(body),
            fields=body.get("fields") or {},
            times=body.get("times"),
            probability=float(body.get("probability", 1.0)),
        )
        store.put_rule(rule)
        return JSONResponse(rule.to_dict())

    async def clear_scenarios(request: Request) -> Response:
        for rule in store.rules():
            store.delete_rule(rule.id)
        return JSONResponse({"deleted": "all"})

    async def delete_scenario(request: Request) -> Response:
        rule_id = request.path_params["rule_id"]
        if not store.delete_rule(rule_id):
            raise ApiError(404, f"no rule {rule_id}", type=NOT_FOUND, param="rule_id")
        return JSONResponse({"deleted": rule_id})

    async def requests(request: Request) -> Response:
        q = request.query_params
        try:
            since = int(q.get("since", "0"))
            limit = int(q["limit"]) if "limit" in q else None
        except ValueError:
            raise bad_request("since and limit must be whole numbers") from None
        account = _account(q)
        entries = [
            e
            for e in store.journal(since)
            if (not q.get("method") or e["method"] == q["method"].upper())
            and (not q.get("path") or e["path"].startswith(q["path"]))
            and (account is None or e.get("account") == account)
        ]
        return JSONResponse({"requests": entries[-limit:] if limit else entries})

    async def ledger_route(request: Request) -> Response:
        account = _account(request.query_params)
        records = store.tasks(account)
        balances = store.balances()
        if account is not None:
            balances = {account: balances.get(account, ctx.settings.default_balance)}
        summary = ledger.summary(records, clock.now(), balances, ctx.settings.default_balance)
        return JSONResponse({**summary, "prices": ctx.prices})

    async def balances(request: Request) -> Response:
        body = await _body(request, spec, "BalanceChange")
        account = _account(body)
        if account is None:
            raise bad_request("name the account by token or account", "token")
        store.set_balance(account, body["balance"])
        return JSONResponse({"account": account, "balance": body["balance"]})

    async def tasks(request: Request) -> Response:
        now = clock.now()
        return JSONResponse({"tasks": [_internal(r, now) for r in store.tasks(_account(request.query_params))]})

    async def task(request: Request) -> Response:
        task_id = request.path_params["task_id"]
        record = store.get_task(task_id)
        if record is None:
            raise ApiError(404, f"task {task_id} not found", type=NOT_FOUND, param="task_id")
        return JSONResponse(_internal(record, clock.now()))

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/reset", reset, methods=["POST"]),
            Route("/clock", clock_route, methods=["GET", "POST"]),
            Route("/scenarios", list_scenarios, methods=["GET"]),
            Route("/scenarios", add_scenario, methods=["POST"]),
            Route("/scenarios", clear_scenarios, methods=["DELETE"]),
            Route("/scenarios/{rule_id}", delete_scenario, methods=["DELETE"]),
            Route("/requests", requests, methods=["GET"]),
            Route("/ledger", ledger_route, methods=["GET"]),
            Route("/balances", balances, methods=["POST"]),
            Route("/tasks", tasks, methods=["GET"]),
            Route("/tasks/{task_id}", task, methods=["GET"]),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.router.redirect_slashes = False
    return app
