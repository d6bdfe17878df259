"""Assembly: ``create_app(settings, clock=, store=, spec=)`` builds the fake as an ASGI app."""

from __future__ import annotations

import gc
import inspect
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..control import ControlPlane
from ..core.clock import Clock
from ..core.spec import Spec
from ..service import Fake, Store
from ..settings import Settings
from .control import control_app, guarded, is_dashboard_file
from .edge import Edge
from .http import EXCEPTION_HANDLERS, JSONResponse
from .logs import redact_access_log
from .media import media_routes
from .origin import same_origin_only
from .provider import ProviderRoutes

__all__ = ["app_from_env", "create_app"]


def spec_routes(spec: Spec) -> list[BaseRoute]:
    async def as_yaml(request: Request) -> Response:
        return Response(spec.yaml_text, media_type="application/yaml")

    async def as_json(request: Request) -> Response:
        return Response(spec.json_bytes, media_type="application/json")

    return [Route("/openapi.yaml", as_yaml), Route("/openapi.json", as_json)]


def health_route(fake: Fake) -> Callable[[Request], Awaitable[Response]]:
    """``GET /healthz``: liveness and the store's health, outside the control plane (it answers
    with ``--no-control`` and needs no control token): 200 ``{"status": "ok", …}`` or 503."""

    async def healthz(request: Request) -> Response:
        check = getattr(fake, "health", None)
        result = check() if callable(check) else {"status": "ok"}
        found: dict[str, Any] = dict(await result if inspect.isawaitable(result) else result)
        return JSONResponse(found, 200 if found.get("status") == "ok" else 503)

    return healthz


class FakeApp(Starlette):
    """Starlette with the edge (``edge.Edge``) outside its own error middleware, not inside: a
    provider request goes from the edge straight to its route. What the router answers still
    passes through Starlette's error middleware, whose last-resort answer (``http.server_error``)
    is the edge's own."""

    def __init__(self, edge: Middleware, **options: Any) -> None:
        super().__init__(**options)
        self.edge = edge

    def build_middleware_stack(self) -> ASGIApp:
        edge, args, kwargs = self.edge
        return edge(super().build_middleware_stack(), *args, **kwargs)  # type: ignore[no-any-return]


def built_on_first_use(build: Callable[[], ASGIApp]) -> ASGIApp:
    """An ASGI app made when it is first called: an in-process fake whose test never touches the
    control plane does not pay for building its two dozen routes."""
    made: list[ASGIApp] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if not made:
            made.append(build())
        await made[0](scope, receive, send)

    return app


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    spec: Spec | None = None,
    listening: bool = False,
) -> Starlette:
    """The fake as an ASGI app. Every collaborator can be handed in (tests hand in a virtual clock).
    ``listening``: served on a socket (``mockserver serve``), so the control plane checks ``Host``."""
    fake = Fake.open((settings or Settings()).validated(), clock=clock, store=store, spec=spec)
    if listening:
        redact_access_log()
    provider = ProviderRoutes(fake)
    routes: list[BaseRoute] = [*provider.routes(), *media_routes(fake), *spec_routes(fake.spec)]
    routes.append(Route("/healthz", health_route(fake), methods=["GET", "HEAD"]))
    if fake.settings.control:
        token = fake.settings.control_token
        plane: ASGIApp = built_on_first_use(lambda: control_app(fake))
        plane = guarded(plane, token) if token else plane
        plane = same_origin_only(plane, fake.settings, listening=listening, public=is_dashboard_file)
        routes.append(Mount("/__mock__", app=plane))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        print(await ControlPlane(fake).spend_report(), file=sys.stderr, flush=True)

    app = FakeApp(
        Middleware(Edge, fake=fake, routes=provider),
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # a stray slash is a 404, as on the provider, not a redirect
    app.state.fake = fake
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` and worker processes: settings from ``MOCKSERVER_*``.

    The objects made at start-up (the spec, compiled validators, routes) live as long as the
    process: they are frozen out of the garbage collector's sight, so its passes stay short.
    """
    app = create_app(Settings.from_env(), listening=True)
    gc.collect()
    gc.freeze()
    return app
