"""What every group of control routes shares: the service, the control spec, and the readers of
a request's body and query (each refusal a 400 naming the parameter)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import BaseRoute

from ...control import ControlPlane
from ...core import jsonio
from ...core.errors import bad_request
from ...core.spec import Spec


class Routes:
    """One concern's routes: its handlers are methods reading ``control`` (the control plane),
    ``fake`` (the provider service it works on) and ``spec`` (``spec/control.yaml``, which validates
    bodies). Each handler asks the control plane once."""

    def __init__(self, control: ControlPlane, spec: Spec) -> None:
        self.control = control
        self.fake = control.fake
        self.spec = spec

    def routes(self) -> list[BaseRoute]:
        """This concern's routes, in the order the router tries them."""
        raise NotImplementedError

    def account_of(self, values: Any) -> str | None:
        """An account named by ``account`` (its id) or ``token`` (the bearer token)."""
        token = values.get("token")
        if token:
            return self.fake.account_of_token(token)
        account = values.get("account")
        return self.fake.account_alias(account) if isinstance(account, str) else account

    def named_account(self, value: str) -> str:
        """The account a path names: an account id (``acct_…``), or anything else as a token."""
        return self.fake.account_named(value)

    async def body(self, request: Request, schema: str) -> dict[str, Any]:
        """The request's JSON body checked against ``schema`` (an empty body is ``{}``)."""
        return await read_body(request, self.spec, schema)


async def read_body(request: Request, spec: Spec, schema: str) -> dict[str, Any]:
    """The request's JSON body (``{}`` when blank), valid against ``schema`` or a 400."""
    raw = await request.body()
    try:
        body = jsonio.loads(raw) if raw.strip() else {}
    except UnicodeDecodeError:
        raise bad_request("request body is not valid UTF-8") from None
    spec.check(schema, body)
    result: dict[str, Any] = body
    return result


def flag(query: Any, name: str) -> bool | None:
    """A true/false query parameter (also 1/0); None when absent or empty."""
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() not in ("true", "false", "1", "0"):
        raise bad_request(f"{name} must be true or false (got {raw[:20]!r})", name)
    return raw.lower() in ("true", "1")


def whole(query: Any, name: str, default: int | None = None, *, lowest: int = 0) -> int | None:
    """A whole-number query parameter of at most 12 digits, at least ``lowest``; ``default`` when absent."""
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12 or int(raw) < lowest:
        raise bad_request(f"{name} must be a whole number >= {lowest} (got {raw[:20]!r})", name)
    return int(raw)
