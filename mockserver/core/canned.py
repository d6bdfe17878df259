"""Canned responses: the escape hatch that answers a request as told, before any rule runs.

A canned response names a method (or any), a path glob (``core.matching``),
optionally an account and body fields the request must contain, and the answer:
a status, headers and a body (JSON, or raw text). It answers ``times`` times
(None: every time) and counts how often it did (``fired``, kept by the store).
Pure: the edge asks the service, the service asks the store, this module decides.

**Only what can be sent exists.** A response whose status, headers or body could not go on the
wire would drop every request it matches unanswered, so making one (``POST /__mock__/responses``,
a state import, a store's read) refuses it with a 400 naming the field: an interim status (1xx),
a body on 204 or 304, a header name that is not an RFC 9110 token, a header value with control
characters (CR, LF, NUL…), outer whitespace or characters beyond latin-1, ``transfer-encoding``,
and a ``content-length`` that is not the body's length.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import bad_request
from .jsonio import dumps
from .matching import contains, path_matches

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a field name (RFC 9110 §5.1, §5.6.2)
LATIN_1 = re.compile(r"[\x00-\xff]*")
VISIBLE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")  # field-vchar, obs-text, SP and HTAB (RFC 9110 §5.5)
BODILESS = frozenset({204, 304})


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

    def __post_init__(self) -> None:
        """Refuse what could not be sent (see the module's docstring): a 400 naming the field."""
        _check_status(self)
        for name, value in self.headers.items():
            _check_header(self, name, value)

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


def _check_status(response: CannedResponse) -> None:
    """A final status (200–599), and no body on one that cannot carry any."""
    status = response.status
    if 100 <= status <= 199:
        raise bad_request(f"status: {status} is an interim (1xx) response, never an answer: give 200-599", "status")
    if not 200 <= status <= 599:
        raise bad_request(f"status: {status} is not an HTTP status: give 200-599", "status")
    if status in BODILESS and response.content()[0]:
        raise bad_request(f"status: a {status} response has no body: leave out body and text", "status")


def _check_header(response: CannedResponse, name: str, value: str) -> None:
    """A header that can go on the wire as given, and none that frames the body differently."""
    where = f"headers.{name}"
    if not TOKEN.fullmatch(name):
        raise bad_request(f"{where}: a header name must be a token: letters, digits and !#$%&'*+-.^_`|~", where)
    if not LATIN_1.fullmatch(value):
        raise bad_request(f"{where}: a header value cannot hold characters beyond latin-1", where)
    if not VISIBLE.fullmatch(value):
        raise bad_request(f"{where}: a header value cannot hold CR, LF or another control character", where)
    if value != value.strip(" \t"):
        raise bad_request(f"{where}: a header value cannot begin or end with whitespace", where)
    lowered = name.lower()
    if lowered == "transfer-encoding":
        raise bad_request(f"{where}: the body's framing is set by the server", where)
    if lowered == "content-length":
        length = len(response.content()[0])
        if value != str(length):
            raise bad_request(f"{where}: {value} is not the body's length ({length} bytes)", where)


def answering(
    responses: list[CannedResponse], method: str, path: str, account: str | None, body: Any
) -> list[CannedResponse]:
    """The responses that would answer, in the order they were added (the store fires the first
    that still has answers left)."""
    return [r for r in responses if not r.spent() and r.matches_route(method, path) and r.matches_caller(account, body)]
