"""``/__mock__/`` routes: the fake's own knobs, apart from the provider's API.

Bodies are validated with ``spec/control.yaml``, the control plane's own
OpenAPI document (served at ``/__mock__/openapi.json``). Control requests need
no provider token; ``--no-control`` switches the whole plane off. Each route
reads its request and asks the service (``Fake``) once.
"""

from __future__ import annotations

import hmac
import os
import re
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core import faults, har, jsonio, matching
from ..core.accounts import account_id, bearer_token
from ..core.errors import AUTHENTICATION, ApiError, bad_request, error_body
from ..core.spec import CONTROL, Spec
from ..service import Fake
from .http import CONTROL_EXCEPTION_HANDLERS, JSONResponse

DASHBOARD = Path(__file__).resolve().parent / "dashboard"


async def _body(request: Request, spec: Spec, schema: str) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = jsonio.loads(raw) if raw.strip() else {}
    except UnicodeDecodeError:
        raise bad_request("request body is not valid UTF-8") from None
    spec.check(schema, body)
    result: dict[str, Any] = body
    return result


def _account(values: Any) -> str | None:
    """An account named by ``account`` (its id) or ``token`` (the bearer token)."""
    token = values.get("token")
    return account_id(token) if token else values.get("account")


ACCOUNT_ID = re.compile(r"acct_[0-9a-f]{16}")


def _named(value: str) -> str:
    """The account a path names: an account id (``acct_…``) as it is, anything else as a token."""
    return value if ACCOUNT_ID.fullmatch(value) else account_id(value)


def _flag(query: Any, name: str) -> bool | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() not in ("true", "false", "1", "0"):
        raise bad_request(f"{name} must be true or false (got {raw[:20]!r})", name)
    return raw.lower() in ("true", "1")


def _whole(query: Any, name: str, default: int | None = None, *, lowest: int = 0) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12 or int(raw) < lowest:
        raise bad_request(f"{name} must be a whole number >= {lowest} (got {raw[:20]!r})", name)
    return int(raw)


def guarded(app: ASGIApp, token: str) -> ASGIApp:
    """``app`` answering only requests with ``Authorization: Bearer <token>`` (401 otherwise),
    except the dashboard page and its static files, which ask for the token themselves."""
    expected = token.encode("utf-8")

    async def guard(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_dashboard_file(scope):
            given = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    given = bearer_token(value.decode("latin-1"))
            if given is None or not hmac.compare_digest(given.encode("latin-1", "replace"), expected):
                reason = "missing" if given is None else "wrong"
                body = error_body(
                    401,
                    f"the control plane needs 'Authorization: Bearer <control token>' ({reason} token)",
                    AUTHENTICATION,
                )
                challenge = {"www-authenticate": 'Bearer realm="mockserver control plane"'}
                await JSONResponse(body, 401, headers=challenge)(scope, receive, send)
                return
        await app(scope, receive, send)

    return guard


def is_dashboard_file(scope: Scope) -> bool:
    """The dashboard page and its assets: they hold no state (the page's own calls carry the token)."""
    path, root = scope["path"], scope.get("root_path", "")
    inner = path[len(root) :] if root and path.startswith(root) else path
    return scope["method"] in ("GET", "HEAD") and (inner in ("", "/") or inner.startswith("/dashboard/"))


def dashboard_headers(public_url: str | None) -> dict[str, str]:
    """The dashboard's own policy: its own script and styles, media from the fake, nothing else
    (style attributes allowed: they cannot run code)."""
    media = "'self'" + (f" {public_url.rstrip('/')}" if public_url else "")
    policy = (
        "default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
        f"img-src {media} data:; media-src {media}; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return {"content-security-policy": policy, "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


def control_app(fake: Fake) -> Starlette:
    spec = Spec.shared(CONTROL)
    clock = fake.clock

    page_headers = dashboard_headers(fake.settings.public_url)

    async def dashboard(request: Request) -> Response:
        return FileResponse(DASHBOARD / "index.html", media_type="text/html", headers=page_headers)

    async def health(request: Request) -> Response:
        found = fake.health()  # {"status": "ok" | "unhealthy", "store": "ok" | why not}
        body = {**found, "pid": os.getpid(), "state": fake.settings.state.split("://")[0]}
        return JSONResponse(body, 200 if found["status"] == "ok" else 503)

    async def openapi(request: Request) -> Response:
        return Response(spec.json_bytes, media_type="application/json")

    async def reset(request: Request) -> Response:
        account = _account(await _body(request, spec, "AccountRef"))
        fake.reset(account)
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
        except (ValueError, OverflowError) as exc:
            raise bad_request(str(exc), "set" if body.get("set") is not None else "advance") from None
        return JSONResponse(clock_state())

    async def list_faults(request: Request) -> Response:
        catalogue = [
            {"name": k.name, "summary": k.summary, "params": dict(k.params), "task": k.task}
            for k in faults.CATALOGUE.values()
        ]
        return JSONResponse({"catalogue": catalogue, "rules": [r.to_dict() for r in fake.rule_listing()]})

    async def add_fault(request: Request) -> Response:
        body = await _body(request, spec, "RuleRequest")
        rule = fake.add_fault_rule(
            body["scenario"],
            body.get("params"),
            endpoint=body.get("endpoint", "any"),
            account=_account(body),
            fields=body.get("fields"),
            times=body.get("times"),
            probability=body.get("probability", 1.0),
        )
        return JSONResponse(rule.to_dict())

    async def clear_faults(request: Request) -> Response:
        fake.clear_fault_rules()
        return JSONResponse({"deleted": "all"})

    async def delete_fault(request: Request) -> Response:
        rule_id = request.path_params["rule_id"]
        fake.delete_fault_rule(rule_id)
        return JSONResponse({"deleted": rule_id})

    async def requests(request: Request) -> Response:
        q = request.query_params
        entries = fake.journal(
            _whole(q, "since", 0) or 0,
            method=q.get("method"),
            path=q.get("path"),
            account=_account(q),
            status=_whole(q, "status"),
            limit=_whole(q, "limit"),
            refused=_flag(q, "refused"),
        )
        return JSONResponse({"requests": entries})

    async def verify(request: Request) -> Response:
        body = await _body(request, spec, "Verification")
        expectation = matching.Expectation(
            method=body.get("method"),
            path=body.get("path"),
            json_contains=body.get("json_contains"),
            account=_account(body),
            status=body.get("status"),
        )
        return JSONResponse(fake.verify(expectation, body.get("times"), body.get("since", 0)))

    async def requests_har(request: Request) -> Response:
        base = str(request.base_url).rstrip("/").removesuffix("/__mock__")
        return JSONResponse(har.document(fake.journal(), base), headers={"content-disposition": "inline"})

    async def ledger_route(request: Request) -> Response:
        q = request.query_params
        return JSONResponse(fake.ledger(_account(q), offset=_whole(q, "offset", 0) or 0, limit=_whole(q, "limit")))

    async def balances(request: Request) -> Response:
        body = await _body(request, spec, "BalanceChange")
        account = _account(body)
        if account is None:
            raise bad_request("name the account by token or account", "token")
        fake.set_balance(account, body["balance"])
        return JSONResponse({"account": account, "balance": body["balance"]})

    async def tasks(request: Request) -> Response:
        q = request.query_params
        order = q.get("order", "asc")
        if order not in ("asc", "desc"):
            raise bad_request("order must be asc or desc", "order")
        page, total = fake.tasks(
            _account(q),
            status=q.get("status"),
            newest_first=order == "desc",
            offset=_whole(q, "offset", 0) or 0,
            limit=_whole(q, "limit", lowest=1),
        )
        return JSONResponse({"tasks": page, "total": total})

    async def task(request: Request) -> Response:
        return JSONResponse(fake.task(request.path_params["task_id"]))

    async def seed_task(request: Request) -> Response:
        body = await _body(request, spec, "SeedTask")
        account = _account(body)
        if account is None:
            raise bad_request("name the account by token or account", "token")
        record = fake.seed_task(
            account,
            action=body.get("action", "VIDEO"),
            status=body.get("status", "SUCCESS"),
            progress=body.get("progress"),
            fail_reason=body.get("fail_reason"),
            prompt=body.get("prompt"),
            batch_size=body.get("batch_size", 1),
            video_type=body.get("video_type"),
            speed=body.get("speed"),
            task_seconds=body.get("task_seconds"),
            ended_seconds_ago=body.get("ended_seconds_ago", 0.0),
            expired=body.get("expired", False),
            charged=body.get("charged", False),
            task_id=body.get("id"),
        )
        return JSONResponse({"task_id": record.id, **fake.internal_task(record)})

    async def state(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(fake.export_state(upload_data=bool(_flag(request.query_params, "upload_data"))))
        return JSONResponse({"imported": fake.import_state(await _body(request, spec, "State"))})

    async def list_responses(request: Request) -> Response:
        return JSONResponse({"responses": [r.to_dict() for r in fake.canned_listing()]})

    async def add_response(request: Request) -> Response:
        body = await _body(request, spec, "CannedRequest")
        return JSONResponse(fake.add_canned_response(body, _account(body)).to_dict())

    async def clear_responses(request: Request) -> Response:
        fake.clear_canned_responses()
        return JSONResponse({"deleted": "all"})

    async def delete_response(request: Request) -> Response:
        response_id = request.path_params["response_id"]
        fake.delete_canned_response(response_id)
        return JSONResponse({"deleted": response_id})

    async def account_route(request: Request) -> Response:
        account = _named(request.path_params["account"])
        if request.method == "GET":
            return JSONResponse({"account": account, "settings": fake.account_settings(account)})
        changes = await _body(request, spec, "AccountSettings")
        return JSONResponse({"account": account, "settings": fake.configure_account(account, changes)})

    app = Starlette(
        routes=[
            Route("/", dashboard, methods=["GET"]),
            Mount("/dashboard", app=StaticFiles(directory=DASHBOARD, check_dir=False)),
            Route("/health", health, methods=["GET"]),
            Route("/openapi.json", openapi, methods=["GET"]),
            Route("/reset", reset, methods=["POST"]),
            Route("/clock", clock_route, methods=["GET", "POST"]),
            Route("/scenarios", list_faults, methods=["GET"]),
            Route("/scenarios", add_fault, methods=["POST"]),
            Route("/scenarios", clear_faults, methods=["DELETE"]),
            Route("/scenarios/{rule_id}", delete_fault, methods=["DELETE"]),
            Route("/requests", requests, methods=["GET"]),
            Route("/requests.har", requests_har, methods=["GET"]),
            Route("/requests/verify", verify, methods=["POST"]),
            Route("/ledger", ledger_route, methods=["GET"]),
            Route("/balances", balances, methods=["POST"]),
            Route("/tasks", tasks, methods=["GET"]),
            Route("/tasks", seed_task, methods=["POST"]),
            Route("/tasks/{task_id}", task, methods=["GET"]),
            Route("/state", state, methods=["GET", "PUT"]),
            Route("/responses", list_responses, methods=["GET"]),
            Route("/responses", add_response, methods=["POST"]),
            Route("/responses", clear_responses, methods=["DELETE"]),
            Route("/responses/{response_id}", delete_response, methods=["DELETE"]),
            Route("/accounts/{account}", account_route, methods=["GET", "POST"]),
        ],
        exception_handlers=CONTROL_EXCEPTION_HANDLERS,
    )
    app.router.redirect_slashes = False
    return app
