"""Which request paths the proxy forwards: only one spelling per documented route.

httpx removes dot segments when it builds the upstream URL, and an upstream may
decode ``%2e``, drop ``;params``, stop at ``%00``, fold case or ignore a trailing
``/``; any of those would let a spelling the spend cap does not recognise reach a
paid route. So a path is forwarded only if it is *canonical*: ``/``-separated
segments, none empty, none made of dots only, each of RFC 3986 unreserved
characters (``A-Z a-z 0-9 - . _ ~``) or percent escapes of characters that are
neither unreserved nor ``/ \\ ; ? #`` nor control characters, and, if it looks
like a documented route in any loose reading (escapes decoded, ``;params`` and
``NUL``\\ s dropped, dot segments resolved, empty segments and case ignored), it
is exactly that route (a ``{template}`` segment: one segment of unreserved
characters). Anything else is refused locally with a 400; nothing is forwarded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

__all__ = ["PathRules"]

_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]+")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_FORBIDDEN_ESCAPED = frozenset(b"/\\;?#%") | frozenset(range(0x20)) | {0x7F}
_DOTS = re.compile(r"\.+")


def _escapes_ok(segment: str) -> bool:
    for match in _ESCAPE.finditer(segment):
        value = int(match.group(1), 16)
        if chr(value).isascii() and (_UNRESERVED.fullmatch(chr(value)) or value in _FORBIDDEN_ESCAPED):
            return False
        if match.group(1) != match.group(1).upper():
            return False
    return True


def _segment_ok(segment: str) -> bool:
    if not segment or _DOTS.fullmatch(segment):
        return False
    plain = _ESCAPE.sub("", segment)
    return (not plain or _UNRESERVED.fullmatch(plain) is not None) and _escapes_ok(segment)


def is_canonical(path: str) -> bool:
    """True for ``/`` and for ``/seg/seg…`` whose every segment is canonical (see the module doc)."""
    if path == "/":
        return True
    if not path.startswith("/"):
        return False
    return all(_segment_ok(segment) for segment in path[1:].split("/"))


def loose(path: str) -> list[str]:
    """The path's segments as a lenient server might read them: lower case, escapes decoded
    (repeatedly), ``\\`` as ``/``, ``;params``/``?``/``#``/``NUL`` onwards dropped, dot segments
    resolved, empty segments gone."""
    text = path
    for _ in range(4):
        decoded = unquote(text, errors="replace")
        if decoded == text:
            break
        text = decoded
    text = text.replace("\\", "/").lower()
    out: list[str] = []
    for segment in text.split("/"):
        segment = re.split(r"[;?#\x00]", segment, maxsplit=1)[0].strip()
        if segment in ("", "."):
            continue
        if _DOTS.fullmatch(segment):
            if out:
                out.pop()
            continue
        out.append(segment)
    return out


class PathRules:
    """The documented path templates (``/v1/tasks/{task_id}``), as strict and loose patterns."""

    def __init__(self, templates: Iterable[str]) -> None:
        self.templates = tuple(dict.fromkeys(templates))
        self._strict = [
            re.compile("^" + re.sub(r"\\\{\w+\\\}", "[A-Za-z0-9._~-]+", re.escape(t)) + "$") for t in self.templates
        ]
        self._loose = [
            [None if s.startswith("{") else s.lower() for s in t.strip("/").split("/")] for t in self.templates
        ]

    def is_route(self, path: str) -> bool:
        """Exactly the canonical form of a documented route."""
        return is_canonical(path) and any(p.match(path) for p in self._strict)

    def resembles_route(self, path: str) -> bool:
        """A loose reading of ``path`` is a documented route."""
        segments = loose(path)
        return any(
            len(shape) == len(segments) and all(s is None or s == seg for s, seg in zip(shape, segments, strict=True))
            for shape in self._loose
        )

    def problem(self, path: str) -> str | None:
        """None when ``path`` may be forwarded; else why not."""
        if self.is_route(path):
            return None
        if not is_canonical(path):
            return "it is not in canonical form (dot or empty segments, escapes, ';', NUL, …)"
        if self.resembles_route(path):
            return "it is a non-canonical spelling of a documented route"
        return None
