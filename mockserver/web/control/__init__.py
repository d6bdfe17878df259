"""``/__mock__/`` routes: the fake's own knobs, apart from the provider's API.

Bodies are validated with ``spec/control.yaml``, the control plane's own
OpenAPI document (served at ``/__mock__/openapi.json``). Control requests need
no provider token; ``--no-control`` switches the whole plane off. Each route
reads its request and asks the control plane (``control.ControlPlane``) once.

One module per concern, each a ``common.Routes`` class whose methods are its
handlers; ``control_app`` only puts their routes together.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from ...control import ControlPlane
from ...core.spec import CONTROL, Spec
from ...service import Fake
from ..http import CONTROL_EXCEPTION_HANDLERS
from .accounts import Accounts
from .clock import ClockRoutes
from .common import Routes
from .guard import dashboard_headers, guarded, is_dashboard_file
from .journal import Journal
from .ledger import Ledger
from .responses import CannedResponses
from .rules import FaultRules
from .site import DASHBOARD, Site
from .state import State
from .tasks import Tasks

__all__ = ["DASHBOARD", "control_app", "dashboard_headers", "guarded", "is_dashboard_file"]

CONCERNS: tuple[type[Routes], ...] = (
    Site,
    State,
    ClockRoutes,
    FaultRules,
    Journal,
    Ledger,
    Tasks,
    CannedResponses,
    Accounts,
)  # the router tries their routes in this order


def control_app(fake: Fake) -> Starlette:
    """The control plane as a Starlette app, mounted at ``/__mock__`` (``web.app.create_app``)."""
    spec = Spec.shared(CONTROL)
    control = ControlPlane(fake)
    routes: list[BaseRoute] = [route for concern in CONCERNS for route in concern(control, spec).routes()]
    app = Starlette(routes=routes, exception_handlers=CONTROL_EXCEPTION_HANDLERS)
    app.router.redirect_slashes = False
    return app
