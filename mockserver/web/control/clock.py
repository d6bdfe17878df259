"""``/clock``: read the fake's clock, freeze it, move it (a virtual clock only)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...control import ControlPlane
from ...core.errors import ApiError, bad_request
from ...core.spec import Spec
from ..http import JSONResponse
from .common import Routes


class ClockRoutes(Routes):
    """``GET /clock`` reads it; ``POST /clock`` freezes, unfreezes, advances or sets it: a 409 when
    this server's clock cannot be moved (the real one), a 400 for a number it refuses."""

    def __init__(self, control: ControlPlane, spec: Spec) -> None:
        super().__init__(control, spec)
        self.clock = control.clock

    def routes(self) -> list[BaseRoute]:
        return [Route("/clock", self.read_or_move, methods=["GET", "POST"])]

    def state(self) -> dict[str, Any]:
        return {"now": self.clock.now(), "frozen": bool(getattr(self.clock, "frozen", True))}

    async def read_or_move(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(self.state())
        body = await self.body(request, "ClockChange")
        try:
            self.change(body)
        except AttributeError:
            raise ApiError(409, "this server's clock cannot be moved", param=None) from None
        except (ValueError, OverflowError) as exc:
            raise bad_request(str(exc), "set" if body.get("set") is not None else "advance") from None
        finally:
            await self.control.save_clock()  # what moved before a refusal stays moved, for every worker
        return JSONResponse(self.state())

    def change(self, body: dict[str, Any]) -> None:
        """Freeze or unfreeze, then advance, then set: in that order, as a body may ask all three."""
        clock = self.clock
        if body.get("freeze") is True and hasattr(clock, "freeze"):
            clock.freeze()
        elif body.get("freeze") is False and hasattr(clock, "unfreeze"):
            clock.unfreeze()
        if body.get("advance") is not None:
            clock.advance(float(body["advance"]))  # type: ignore[attr-defined]
        if body.get("set") is not None:
            clock.set(float(body["set"]))  # type: ignore[attr-defined]
