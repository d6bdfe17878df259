"""Matching requests: path globs, "the body contains", expectations over the journal, near misses.

Pure functions over plain values (journal entries are dicts), shared by request
verification (``POST /__mock__/requests/verify``) and canned responses.

**Path patterns are globs**, matched against the whole path (never the query):
``*`` is any run of characters except ``/``, ``**`` any run including ``/``,
``?`` one character except ``/``; everything else is literal. A pattern without
wildcards is an exact path. ``/v1/tasks/*`` matches ``/v1/tasks/task_01…`` but
not ``/v1/tasks/a/b``; ``/media/**`` matches every media file. Matching takes time
linear in the path, whatever the glob (``Glob``: it never backtracks).

**"The body contains"** (``json_contains``, a canned response's ``fields``): an
object contains another when it has each of its keys with a value that contains
the other's (recursively); a list contains another of the same length whose items
it contains in order; any other value only equals (``true`` is not ``1``).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NEAR_MISSES = 5  # how many near misses a failed verification lists
PREFIX_SEGMENTS = 2  # a near miss of another method shares this many leading path segments (or the whole head)


TOKENS = re.compile(r"\*{2,}|\*|\?|[^*?]", re.DOTALL)  # a run of stars with two or more is one ``**``


@dataclass(frozen=True)
class Glob:
    """A glob as bit masks over its positions (bit ``i``: its first ``i`` tokens matched), run as a
    set of states over the path, one character at a time: time linear in the path, never backtracking
    (a regular expression with one ``.*`` per ``**`` took seconds over a 2 KB path)."""

    literal: Mapping[str, int]  # a character: the positions whose next token is that character
    one: int  # positions whose next token is ``?``
    star: int  # ... ``*``
    any: int  # ... ``**``
    final: int  # the position after the last token

    def matches(self, path: str) -> bool:
        """Whether the whole of ``path`` matches (no two stars are next to each other: see ``glob``)."""
        stars = self.star | self.any
        states = 1 | ((1 & stars) << 1)
        for char in path:
            if char == "/":
                states = ((states & self.literal.get(char, 0)) << 1) | (states & self.any)
            else:
                states = ((states & (self.literal.get(char, 0) | self.one)) << 1) | (states & stars)
            states |= (states & stars) << 1  # a star may match nothing
            if not states:
                return False
        return bool(states & self.final)


@functools.lru_cache(maxsize=512)
def glob(pattern: str) -> Glob:
    """The compiled glob of ``pattern``. A run of stars holding ``**`` is one ``**`` (it matches the
    same paths), so no star follows another, and one step of closure suffices in ``Glob.matches``."""
    literal: dict[str, int] = {}
    masks = {"?": 0, "*": 0, "**": 0}
    tokens = [t if t[0] != "*" else t[:2] for t in TOKENS.findall(pattern)]
    for n, token in enumerate(tokens):
        if token in masks:
            masks[token] |= 1 << n
        else:
            literal[token] = literal.get(token, 0) | 1 << n
    return Glob(literal, masks["?"], masks["*"], masks["**"], 1 << len(tokens))


def path_matches(pattern: str | None, path: str) -> bool:
    """Whether ``path`` matches the glob ``pattern`` (None matches every path)."""
    if pattern is None:
        return True
    if not any(c in pattern for c in "*?"):
        return pattern == path
    return glob(pattern).matches(path)


def literal_head(pattern: str) -> str:
    """The part of a glob before its first wildcard."""
    for n, char in enumerate(pattern):
        if char in "*?":
            return pattern[:n]
    return pattern


def _same_kind(a: Any, b: Any) -> bool:
    return isinstance(a, bool) == isinstance(b, bool)


def contains(actual: Any, expected: Any) -> bool:
    """Whether ``actual`` contains ``expected`` (see the module's docstring)."""
    if isinstance(expected, Mapping):
        return isinstance(actual, Mapping) and all(
            key in actual and contains(actual[key], value) for key, value in expected.items()
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(contains(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return _same_kind(actual, expected) and actual == expected


def differences(actual: Any, expected: Any, where: str = "body") -> list[str]:
    """Why ``actual`` does not contain ``expected``, one phrase per field (empty when it does)."""
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return [f"{where} is {_shown(actual)}, not an object"] if actual is not None else [f"{where} is absent"]
        found: list[str] = []
        for key, value in expected.items():
            inner = f"{where}.{key}"
            if key not in actual:
                found.append(f"{inner} is absent, wanted {_shown(value)}")
            else:
                found += differences(actual[key], value, inner)
        return found
    if contains(actual, expected):
        return []
    return [f"{where} is {_shown(actual)}, wanted {_shown(expected)}"]


def _shown(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Expectation:
    """Which journal entries count: each criterion that is set must hold (None: any)."""

    method: str | None = None
    path: str | None = None  # a glob
    json_contains: Any = None
    account: str | None = None
    status: int | None = None

    def matches(self, entry: Mapping[str, Any]) -> bool:
        return not self.mismatches(entry)

    def mismatches(self, entry: Mapping[str, Any]) -> list[str]:
        """What keeps ``entry`` from matching, one phrase per criterion."""
        found: list[str] = []
        if self.method is not None and entry.get("method") != self.method.upper():
            found.append(f"method is {entry.get('method')}, wanted {self.method.upper()}")
        if self.path is not None and not path_matches(self.path, str(entry.get("path", ""))):
            found.append(f"path does not match {self.path}")
        if self.account is not None and entry.get("account") != self.account:
            found.append("another account")
        if self.status is not None and entry.get("status") != self.status:
            found.append(f"status is {entry.get('status')}, wanted {self.status}")
        if self.json_contains is not None:
            found += differences(entry.get("body"), self.json_contains)
        return found

    def describe(self) -> str:
        parts = [self.method.upper() if self.method else "any method", self.path or "any path"]
        if self.json_contains is not None:
            parts.append(f"with a body containing {_shown(self.json_contains, 200)}")
        if self.account is not None:
            parts.append(f"from {self.account}")
        if self.status is not None:
            parts.append(f"answered {self.status}")
        return " ".join(parts)


def _shared_segments(pattern: str | None, path: str) -> int:
    """How many leading path segments ``path`` shares with the literal head of ``pattern``."""
    if pattern is None:
        return 0
    head = [s for s in literal_head(pattern).split("/") if s]
    segments = [s for s in path.split("/") if s]
    shared = 0
    for a, b in zip(head, segments, strict=False):
        if a != b:
            break
        shared += 1
    return shared


@dataclass(frozen=True)
class NearMiss:
    entry: Mapping[str, Any]
    why: Sequence[str] = field(default_factory=tuple)
    score: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        e = self.entry
        return {
            "seq": e.get("seq"),
            "method": e.get("method"),
            "path": e.get("path"),
            "status": e.get("status"),
            "differences": list(self.why),
        }


def near_misses(
    expectation: Expectation, entries: Sequence[Mapping[str, Any]], limit: int = NEAR_MISSES
) -> list[NearMiss]:
    """The entries closest to matching without matching: same method or a shared path prefix (its
    first two segments), ranked by how many criteria they meet (then how much of the path and body
    they share), newest first."""
    ranked: list[NearMiss] = []
    for entry in entries:
        why = expectation.mismatches(entry)
        if not why:
            continue
        path = str(entry.get("path", ""))
        same_method = expectation.method is None or entry.get("method") == expectation.method.upper()
        shared = _shared_segments(expectation.path, path)
        head = [s for s in literal_head(expectation.path or "").split("/") if s]
        if not same_method and (not head or shared < min(PREFIX_SEGMENTS, len(head))):
            continue  # neither the method nor a path prefix (``/v1/tasks``, not ``/v1`` alone) in common
        body_share = 0.0
        wanted = expectation.json_contains
        if isinstance(wanted, Mapping) and wanted:
            body = entry.get("body")
            body_share = sum(
                1 for k, v in wanted.items() if isinstance(body, Mapping) and k in body and contains(body[k], v)
            ) / len(wanted)
        score = 4.0 * same_method
        score += 4.0 * (expectation.path is None or path_matches(expectation.path, path))
        score += shared / max(len(head), 1) + 2.0 * body_share - 0.5 * len(why)
        ranked.append(NearMiss(entry, tuple(why), score))
    ranked.sort(key=lambda m: (-m.score, -int(m.entry.get("seq") or 0)))
    return ranked[:limit]


def verification(
    expectation: Expectation, entries: Sequence[Mapping[str, Any]], times: int | None = None
) -> dict[str, Any]:
    """Whether the journal holds what ``expectation`` describes ``times`` times (None: at least once),
    with the matching sequence numbers, a message, and the near misses when it does not."""
    matched = [e for e in entries if expectation.matches(e)]
    ok = len(matched) >= 1 if times is None else len(matched) == times
    wanted = "at least once" if times is None else ("never" if times == 0 else f"{times} time(s)")
    seqs = [e.get("seq") for e in matched]
    misses = [] if ok else near_misses(expectation, entries)
    message = f"expected {expectation.describe()} {wanted}, saw {len(matched)}"
    if matched:
        shown = ", ".join(f"#{s}" for s in seqs[:10]) + (" …" if len(seqs) > 10 else "")
        message += f" ({shown})"
    if not ok:
        if misses:
            lines = [
                f"  #{m.entry.get('seq')} {m.entry.get('method')} {m.entry.get('path')} → {m.entry.get('status')}: "
                + "; ".join(m.why)
                for m in misses
            ]
            message += "\nnear misses (closest first):\n" + "\n".join(lines)
        elif times != 0:
            message += f"\nno request came near it ({len(entries)} in the journal)"
    return {
        "ok": ok,
        "matched": len(matched),
        "expected": times,
        "matches": seqs,
        "message": message,
        "near_misses": [m.to_dict() for m in misses],
    }


def refusal(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A refused request as ``journal.refusals()`` lists it: where, the answer, and the rule and field."""
    error = entry.get("error") or {}
    return {
        "seq": entry.get("seq"),
        "time": entry.get("time"),
        "method": entry.get("method"),
        "path": entry.get("path"),
        "status": entry.get("status"),
        "message": error.get("message"),
        "type": error.get("type"),
        "code": error.get("code"),
        "param": error.get("param"),
    }
