"""The control plane's door: the control token, and the dashboard files that need none."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from ...core.accounts import bearer_token
from ...core.errors import AUTHENTICATION, error_body
from ..http import JSONResponse


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
                await refuse(scope, receive, send, "missing" if given is None else "wrong")
                return
        await app(scope, receive, send)

    return guard


async def refuse(scope: Scope, receive: Receive, send: Send, reason: str) -> None:
    """The 401 for a control request without the right token (``reason``: missing or wrong)."""
    body = error_body(
        401,
        f"the control plane needs 'Authorization: Bearer <control token>' ({reason} token)",
        AUTHENTICATION,
    )
    challenge = {"www-authenticate": 'Bearer realm="mockserver control plane"'}
    await JSONResponse(body, 401, headers=challenge)(scope, receive, send)


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
