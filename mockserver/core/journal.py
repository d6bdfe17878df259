"""Journal entries: what is kept of each answered request, bounded and without credentials.

``Entry`` holds what the edge knew when the answer went out (times, method, path, the
request's kept headers, status, and the facts routes and the service noted) and is made
into its final form, every part cut to size, only when it is read or written out
(``to_dict``, ``encoded``): a request pays for a few assignments, not for building and
encoding a document nobody may read. What it holds is bounded all the same: headers are
kept as ``journal_headers`` cut them, and a body larger than ``SMALL_BODY`` is cut
(``clipped``) at once.

Each entry is bounded (about ``ENTRY_MAX_BYTES``): header values, the path, the query and
the body are cut, each cut saying how big the original was. Credential-like headers
(``authorization``, ``cookie``, any name with ``key``, ``token``, ``secret``, ``auth``,
``password`` or ``session`` in it, ``Idempotency-Key`` excepted) are never kept.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from .jsonio import dumps, kept, parse_kept

# What one journal entry may hold (characters; an entry stays within about 16 KiB).
ENTRY_MAX_BYTES = 16 * 1024
HEADERS_BUDGET = 4096  # all kept header names and values together
HEADER_VALUE_MAX = 512
HEADER_NAME_MAX = 64
TEXT_MAX = 1024  # the path, the query, any other fact
BODY_BUDGET = 4096  # the parsed body, cut structurally
BODY_STRING_MAX = 256  # above what service.shortened leaves of a data: URL, so its note survives
SECRET_WORDS = ("key", "token", "secret", "auth", "cookie", "password", "session")
NOT_SECRET = frozenset({"idempotency-key"})

# A parsed body whose request was at most this many bytes fits the journal as it is, unless a field
# name is longer than HEADER_NAME_MAX: ``clipped`` counts at most about four characters for each
# byte of JSON (a number like 1e15 is written 1000000000000000.0), and 4 × 768 + BODY_STRING_MAX
# stays within BODY_BUDGET, so it would cut nothing (service.shortened has cut long strings).
SMALL_BODY = 768
ENTRY_OVERHEAD = 512  # the fixed fields of an entry, written out (an upper bound)
OTHER_FACT = 256  # a fact that is not a string (an error body, a flag): what it is counted as
TEXT_LIMIT = TEXT_MAX + 32  # what a string fact is counted as at most (cut to TEXT_MAX and quoted)


def redacted_query(query: str) -> str:
    """``query`` with the value of each credential-like parameter (``token=``, ``api_key=``…)
    replaced by ``[redacted]``; everything else as it was written."""
    if "=" not in query:
        return query
    parts = []
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        parts.append(f"{name}=[redacted]" if eq and secret_header(unquote_plus(name).lower()) else part)
    return "&".join(parts)


def secret_header(name: str) -> bool:
    """A header that may carry a credential: never written to the journal."""
    return name not in NOT_SECRET and any(word in name for word in SECRET_WORDS)


def cut(text: str, limit: int) -> str:
    """``text``, or its head and how long it was."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def journal_headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's headers for the journal: no credentials, each value cut, all within a budget."""
    kept: dict[str, str] = {}
    budget = HEADERS_BUDGET
    left_out = 0
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1").lower()
        if secret_header(name):
            continue
        if budget <= 0:
            left_out += 1
            continue
        name = cut(name, HEADER_NAME_MAX)
        value = cut(value_bytes.decode("latin-1"), min(HEADER_VALUE_MAX, max(budget, 16)))
        kept[name] = value
        budget -= len(name) + len(value)
    if left_out:
        kept["…"] = f"{left_out} more header(s) not kept"
    return kept


def long_key(value: Any) -> bool:
    """Whether a parsed body holds a field name longer than the journal keeps (HEADER_NAME_MAX)."""
    if isinstance(value, dict):
        for key, child in value.items():
            if len(key) > HEADER_NAME_MAX or (isinstance(child, dict | list) and long_key(child)):
                return True
    elif isinstance(value, list):
        for child in value:
            if isinstance(child, dict | list) and long_key(child):
                return True
    return False


def clipped(value: Any, budget: int = BODY_BUDGET) -> Any:
    """A copy of a parsed body that fits the journal: strings cut, lists and objects cut
    once about ``budget`` characters are spent, each cut saying what it left out."""
    left = [budget]

    def clip(item: Any) -> Any:
        if isinstance(item, str):
            text = cut(item, min(BODY_STRING_MAX, max(left[0], 16)))
            left[0] -= len(text) + 2
            return text
        if isinstance(item, dict):
            out: dict[str, Any] = {}
            left[0] -= 2
            for n, (key, child) in enumerate(item.items()):
                if left[0] <= 0:
                    out["…"] = f"{len(item) - n} more field(s)"
                    break
                name = cut(str(key), HEADER_NAME_MAX)
                left[0] -= len(name) + 4
                out[name] = clip(child)
            return out
        if isinstance(item, list):
            items: list[Any] = []
            left[0] -= 2
            for n, child in enumerate(item):
                if left[0] <= 0:
                    items.append(f"… {len(item) - n} more item(s)")
                    break
                items.append(clip(child))
                left[0] -= 1
            return items
        left[0] -= len(repr(item))
        return item

    return clip(value)


class Entry:
    """One answered request, as the journal will show it (``to_dict``), made when first read.

    ``headers`` are the request's headers as ``journal_headers`` kept them (shared between entries
    of requests with the same headers: never changed), ``headers_size`` their encoded length;
    ``facts`` the request's own mapping of facts (done with once the answer is out; it becomes
    the entry's)."""

    __slots__ = ("_encoded", "_values", "facts", "size")

    def __init__(
        self,
        time: float,
        wall_time: float,
        method: str,
        path: str,
        query: bytes,
        headers: dict[str, str],
        headers_size: int,
        body_bytes: int,
        status: int,
        duration_s: float,
        facts: dict[str, Any],
    ) -> None:
        self._values = (time, wall_time, method, path, query, headers, body_bytes, status, duration_s)
        self._encoded: bytes | None = None
        facts.pop("wire_fault", None)  # already named by "scenario"
        size = ENTRY_OVERHEAD + len(path) + len(query) + headers_size
        for name, value in facts.items():  # (on every request: no min() call)
            if name == "body":
                if body_bytes <= SMALL_BODY:  # small: held as it is, cut (if ever) when written out
                    size += 4 * body_bytes + BODY_STRING_MAX  # see SMALL_BODY: at most this once written
                else:  # cut now, so that what is held stays small
                    facts[name] = value = clipped(value)
                    size += len(dumps(value))
            elif isinstance(value, str):
                n = len(value)
                size += n if n < TEXT_LIMIT else TEXT_LIMIT
            else:
                size += OTHER_FACT
        self.facts: dict[str, Any] | None = facts
        self.size = size  # at least the length of ``encoded()`` (the memory store's byte budget counts it)

    @property
    def account(self) -> str | None:
        facts = self.facts
        if facts is None:
            found = parse_kept(self.encoded()).get("account")
            return found if isinstance(found, str) else None
        found = facts.get("account")
        return found if isinstance(found, str) else None

    def _dict(self) -> dict[str, Any]:
        time, wall_time, method, path, query, headers, body_bytes, status, duration_s = self._values
        facts = self.facts or {}
        for name, value in facts.items():
            if isinstance(value, str) and len(value) > TEXT_MAX:
                facts[name] = cut(value, TEXT_MAX)
            elif name == "body" and body_bytes <= SMALL_BODY and long_key(value):
                facts[name] = clipped(value)  # a long field name: cut as the journal cuts it
        return {
            "time": time,
            "wall_time": wall_time,
            "method": method,
            "path": cut(path, TEXT_MAX),
            "query": cut(redacted_query(query.decode("latin-1")), TEXT_MAX) if query else "",
            "headers": headers,
            "body_bytes": body_bytes,
            "status": status or 500,
            "duration_ms": round(duration_s * 1000, 3),
            **facts,
        }

    def encoded(self) -> bytes:
        """The entry's JSON, made once (the facts are let go of then)."""
        if self._encoded is None:
            self._encoded = kept(dumps(self._dict()))
            self.facts = None
        return self._encoded

    def to_dict(self) -> dict[str, Any]:
        """The entry, a fresh mapping each time (callers may change it)."""
        found: dict[str, Any] = parse_kept(self.encoded())
        return found
