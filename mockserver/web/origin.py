"""The control plane answers its own pages and programs, never another web page.

A page on any other origin can send a "simple" request (``fetch(url, {mode:
"no-cors", body})``), and one on a rebound DNS name can even read the answers.
So, on every ``/__mock__/`` request (docs/security.md):

- a write whose body or ``Content-Type`` is not JSON gets 415. A browser sends a
  JSON body to another origin only after a CORS preflight, and the fake never
  grants one;
- a request whose ``Origin`` is not the fake's own, or that the browser marks
  ``Sec-Fetch-Site: cross-site``, gets 403. The dashboard page itself is exempt,
  since following a link to it is a cross-site navigation;
- when the server listens on loopback, a ``Host`` that is not a loopback name
  gets 403, unless ``--allowed-hosts`` names it (``*``: any) or ``--public-url``
  does.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from ..core.errors import PERMISSION, error_body
from ..core.hosts import host_name, is_loopback, netloc, origin_netloc
from ..settings import Settings
from .http import JSONResponse

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Hosts:
    """The ``Host`` names a server on loopback answers: loopback ones and those configured."""

    def __init__(self, settings: Settings, *, listening: bool) -> None:
        names = {n.strip().lower() for n in settings.allowed_hosts.split(",") if n.strip()}
        if settings.public_url:
            names.add((urlsplit(settings.public_url).hostname or "").lower())
        self.any = "*" in names or not listening or not is_loopback(settings.host)
        self.names = frozenset(names)

    def allow(self, host: str) -> bool:
        name = host_name(host)
        return self.any or is_loopback(name) or name in self.names


def same_origin_only(app: ASGIApp, settings: Settings, *, listening: bool, public: Callable[[Scope], bool]) -> ASGIApp:
    """``app`` behind the three checks above; ``public(scope)`` tells the dashboard's own files."""
    hosts = Hosts(settings, listening=listening)
    own = origin_netloc(settings.public_url) if settings.public_url else None

    async def guard(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = _refusal(scope, hosts, own, public(scope))
            if refusal is not None:
                status, message = refusal
                kind = "invalid_request_error" if status == 415 else PERMISSION
                await JSONResponse(error_body(status, message, kind), status)(scope, receive, send)
                return
        await app(scope, receive, send)

    return guard


def _refusal(scope: Scope, hosts: Hosts, own: str | None, public: bool) -> tuple[int, str] | None:
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    host = headers.get("host", "")
    if not hosts.allow(host):
        return 403, (
            f"the control plane does not answer Host {host[:100]!r}: only loopback names, unless "
            "--allowed-hosts (MOCKSERVER_ALLOWED_HOSTS) names it (a guard against DNS rebinding)"
        )
    if public:
        return None
    if headers.get("sec-fetch-site") == "cross-site" or not _own_origin(headers.get("origin"), host, scope, own):
        return 403, "the control plane does not answer requests from another web page (Origin or Sec-Fetch-Site)"
    if scope["method"] in WRITES and not _json_or_empty(headers):
        return 415, "control plane writes take Content-Type: application/json"
    return None


def _own_origin(origin: str | None, host: str, scope: Scope, own: str | None) -> bool:
    if origin is None:
        return True  # not sent by a browser page (curl, a test client) or a same-origin GET
    found = origin_netloc(origin)
    return found is not None and found in (netloc(host, scope.get("scheme", "http")), own)


def _json_or_empty(headers: dict[str, str]) -> bool:
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if kind:
        return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))
    return headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers
