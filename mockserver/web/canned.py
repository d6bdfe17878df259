"""Canned responses at the edge: a request a canned response matches is answered as told, before
the route (and so before any rule: auth, validation, faults) runs.

``Canned(fake)`` is asked once per provider request by ``edge.Edge``. When the store holds no
canned response, that is one cheap read and nothing else. When one matches the method and path
and names body fields, the body is read here (through the edge's limits) and handed on to the
route unchanged when no response answers after all.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope

from ..core.errors import ApiError
from ..service import Fake
from .http import JOURNAL_FACTS, JSONResponse


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the route the body read already, then whatever comes next."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class Canned:
    def __init__(self, fake: Fake) -> None:
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive) -> tuple[ASGIApp | None, Receive]:
        """The canned answer for this request (an ASGI app), or None; and the ``receive`` the route
        must read its body from."""
        read: list[bytes] = []

        async def read_body() -> bytes:
            if read:
                return read[0]
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
            read.append(b"".join(chunks))
            return read[0]

        def authorization() -> str | None:
            header = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    header = value.decode("latin-1")
            return header

        facts: dict[str, Any] = {}  # the journal's, once there is something to say
        try:
            found = await self.fake.canned_response(scope["method"], scope["path"], authorization, read_body, facts)
        except ApiError as exc:  # the body broke the edge's limits while being read
            facts["error"] = exc.body(field_only=True)["error"]
            found = None
            answer: ASGIApp | None = JSONResponse(exc.body(field_only=True), exc.status, headers=exc.headers or None)
        else:
            answer = None
        if facts:
            scope.setdefault("state", {}).setdefault(JOURNAL_FACTS, {}).update(facts)
        if answer is not None:
            return answer, receive
        following = _replaying(read[0], receive) if read else receive
        if found is None:
            return None, following
        content, media_type = found.content()
        return Response(content, found.status, headers=dict(found.headers), media_type=media_type), following
