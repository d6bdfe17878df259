"""Assembly: ``create_app(settings, clock=, store=, spec=)`` builds the fake as an ASGI app."""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from . import ledger
from .clock import Clock, ShiftedClock
from .context import Context
from .http import EXCEPTION_HANDLERS
from .middleware import Edge
from .provider import MediaFiles, ProviderApi
from .settings import Settings
from .spec import Spec
from .store import Store, open_store

__all__ = ["Context", "app_from_env", "create_app"]


def spec_routes(spec: Spec) -> list[BaseRoute]:
    async def as_yaml(request: Request) -> Response:
        return Response(spec.yaml_text, media_type="application/yaml")

    async def as_json(request: Request) -> Response:
        return Response(spec.json_bytes, media_type="application/json")

    return [Route("/openapi.yaml", as_yaml), Route("/openapi.json", as_json)]


def spend_report(ctx: Context) -> str:
    """One line on what the run would have cost on the real API."""
    summary = ledger.summary(ctx.store.tasks(), ctx.clock.now(), ctx.store.balances(), ctx.settings.default_balance)
    accounts = summary["accounts"]
    tasks = sum(a["tasks"] for a in accounts.values())
    return (
        f"mockserver: {tasks} task(s) from {len(accounts)} account(s); on the real API this run would have cost "
        f"{summary['total_spent']:g} (unit prices: {ctx.settings.price_table or 'packaged defaults'})"
    )


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    spec: Spec | None = None,
) -> Starlette:
    """The fake as an ASGI app. Every collaborator can be handed in (tests hand in a virtual clock)."""
    settings = (settings or Settings()).validated()
    store = store if store is not None else open_store(settings.state, settings.journal_size)
    ctx = Context(
        settings=settings,
        spec=spec or Spec(),
        clock=clock or ShiftedClock(state=store),
        store=store,
    )
    routes: list[BaseRoute] = [*ProviderApi(ctx).routes(), *MediaFiles(ctx).routes(), *spec_routes(ctx.spec)]
    if settings.control:
        from .control import control_app

        routes.append(Mount("/__mock__", app=control_app(ctx)))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        print(spend_report(ctx), file=sys.stderr, flush=True)

    app = Starlette(
        routes=routes,
        middleware=[Middleware(Edge, store=ctx.store, clock=ctx.clock, limit=settings.max_body_bytes)],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # a stray slash is a 404, as on the provider, not a redirect
    app.state.ctx = ctx
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` and worker processes: settings from ``MOCKSERVER_*``.

    The objects made at start-up (the spec, compiled validators, routes) live as long as the
    process: they are frozen out of the garbage collector's sight, so its passes stay short.
    """
    app = create_app(Settings.from_env())
    gc.collect()
    gc.freeze()
    return app
