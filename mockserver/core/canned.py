"""Canned responses: the escape hatch that answers a request as told, before any rule runs.

A canned response names a method (or any), a path glob (``core.matching``),
optionally an account and body fields the request must contain, and the answer:
a status, headers and a body (JSON, or raw text). It answers ``times`` times
(None: every time) and counts how often it did (``fired``, kept by the store).
Pure: the edge asks the service, the service asks the store, this module decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .jsonio import dumps
from .matching import contains, path_matches


@dataclass(frozen=True)
class CannedResponse:
    id: str
    path: str  # a glob, matched against the whole path
    method: str | None = None  # upper case; None: any method
    account: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)  # the JSON body must contain these
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    has_body: bool = False  # a JSON body was given (``null`` included)
    text: str | None = None  # a raw body instead
    times: int | None = None  # None: every time
    fired: int = field(default=0, compare=False)

    @property
    def needs_body(self) -> bool:
        """Whether deciding needs the request's body (only then is it read before the route)."""
        return bool(self.fields)

    def matches_route(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and path_matches(self.path, path)

    def matches_caller(self, account: str | None, body: Any) -> bool:
        if self.account is not None and self.account != account:
            return False
        return not self.fields or contains(body, dict(self.fields))

    def spent(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def content(self) -> tuple[bytes, str | None]:
        """The body's bytes and its default content type (``headers`` may name another)."""
        if self.text is not None:
            return self.text.encode("utf-8"), "text/plain; charset=utf-8"
        if self.has_body:
            return dumps(self.body), "application/json"
        return b"", None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "method": self.method,
            "path": self.path,
            "account": self.account,
            "fields": dict(self.fields),
            "status": self.status,
            "headers": dict(self.headers),
            "times": self.times,
            "fired": self.fired,
        }
        if self.has_body:
            out["body"] = self.body
        if self.text is not None:
            out["text"] = self.text
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CannedResponse:
        method = data.get("method")
        return cls(
            id=str(data["id"]),
            path=str(data["path"]),
            method=str(method).upper() if method else None,
            account=data.get("account"),
            fields=dict(data.get("fields") or {}),
            status=int(data.get("status", 200)),
            headers={str(k): str(v) for k, v in (data.get("headers") or {}).items()},
            body=data.get("body"),
            has_body="body" in data,
            text=data.get("text"),
            times=data.get("times"),
            fired=int(data.get("fired") or 0),
        )


def answering(
    responses: list[CannedResponse], method: str, path: str, account: str | None, body: Any
) -> list[CannedResponse]:
    """The responses that would answer, in the order they were added (the store fires the first
    that still has answers left)."""
    return [r for r in responses if not r.spent() and r.matches_route(method, path) and r.matches_caller(account, body)]
