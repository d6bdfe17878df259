"""JSON in and out.

Out: orjson (compiled, ~15× faster than the standard library here), falling back to
the standard library for what orjson refuses (integers beyond 64 bits, echoed from a request).

In: ``loads`` reads a request body and refuses, with a 400 naming the field, what the
fake could not write back later or should not hold: a lone surrogate escape
(``"\\ud800"``: no JSON encoder will write it out again, so a stored task holding one
could never be polled), a number that is not finite (``NaN``, ``Infinity``, ``1e400``),
nesting deeper than ``MAX_DEPTH`` and an array or object of more than ``MAX_ITEMS``
(refused before the schema validator copies it). The checks are paid for only by a body
that could break one: a walk of the parsed value runs only when the raw text holds a
``\\u`` escape, a non-finite number, more brackets than ``MAX_DEPTH`` or ``MAX_ITEMS``
commas; the walk itself is iterative and stops at the first offence, so no body can make
it recurse or run long.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

import orjson

from .errors import bad_request

MAX_DEPTH = 64  # a provider body is 2 levels deep; orjson writes at most 255
MAX_ITEMS = 10_000  # items of one array or object: no body of either API needs more than a handful
_LONG_DIGITS = re.compile(rb"[0-9]{20}")  # an integer orjson could not keep exact


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def kept(encoded: bytes) -> bytes:
    """A copy of ``encoded`` sized to its content, for JSON held long (a stored task, a journal entry):
    the bytes orjson returns keep the 4 KiB buffer they were written in."""
    return bytes(memoryview(encoded))


def loads(raw: bytes | str) -> Any:
    """A request body parsed, or the provider's 400 (malformed, or a value the fake could not keep).

    orjson reads it first (compiled: several times faster); whatever it refuses (malformed JSON,
    ``NaN``, ``1e400``, a lone surrogate escape, invalid UTF-8) is read again by the standard
    parser, which names the problem. Text holding a run of 20 digits skips orjson, which would read
    an integer beyond 64 bits as a float."""
    if isinstance(raw, bytes) and not _long_digits(raw):
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            if (
                b"\\u" in raw
                or (len(raw) > MAX_DEPTH and raw.count(b"[") + raw.count(b"{") > MAX_DEPTH)
                or (len(raw) > MAX_ITEMS and raw.count(b",") >= MAX_ITEMS)
            ):
                check_writable(parsed)
            return parsed
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw  # UnicodeDecodeError is the caller's 400
    constants: list[str] = []
    infinite: list[str] = []

    def constant(name: str) -> float:  # NaN, Infinity, -Infinity: not JSON, though Python's reader takes them
        constants.append(name)
        return float(name)

    def number(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):  # 1e400: valid JSON, but no double holds it
            infinite.append(literal)
        return value

    try:
        value = json.loads(text, parse_constant=constant, parse_float=number)
    except RecursionError:
        raise bad_request(f"malformed JSON: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        raise bad_request(f"malformed JSON: {exc}") from None
    if constants:
        where = _problem(value)
        field = f" (in {where[1]})" if where and where[1] else ""
        raise bad_request(f"malformed JSON: {constants[0]} is not valid JSON{field}")
    if infinite or "\\u" in text or text.count("[") + text.count("{") > MAX_DEPTH or text.count(",") >= MAX_ITEMS:
        check_writable(value)
    return value


def _long_digits(raw: bytes) -> bool:
    """Whether ``raw`` holds a run of 20 digits (fewer than 20 digits in all cannot: one C pass)."""
    return len(raw) - len(raw.translate(None, b"0123456789")) >= 20 and _LONG_DIGITS.search(raw) is not None


def parse_kept(raw: bytes) -> Any:
    """JSON the fake wrote itself (a journal entry): orjson, unless it holds an integer beyond 64 bits."""
    if not _long_digits(raw):
        return orjson.loads(raw)
    return json.loads(raw)


def check_writable(value: Any) -> None:
    """Raise the provider's 400 naming the first field that holds a lone surrogate, a
    non-finite number, or is nested deeper than ``MAX_DEPTH``."""
    found = _problem(value)
    if found is None:
        return
    problem, where = found
    subject = where or "request body"
    if problem == "depth":
        raise bad_request(f"{subject} is nested deeper than {MAX_DEPTH} levels", where)
    if problem == "size":
        raise bad_request(f"{subject} holds more than {MAX_ITEMS} items", where)
    if problem == "number":
        raise bad_request(f"{subject} must be a finite number", where)
    if problem == "key":
        raise bad_request(
            f"a field name in {where or 'the body'} holds a lone surrogate escape (\\ud800-\\udfff)", where
        )
    raise bad_request(f"{subject} holds a lone surrogate escape (\\ud800-\\udfff)", where)


def _problem(value: Any) -> tuple[str, str | None] | None:
    """The first (problem, field) in ``value``: ``surrogate``, ``key`` (a field name with a
    lone surrogate), ``number`` (not finite), ``depth`` or ``size`` (more than ``MAX_ITEMS``
    in one container). Depth-first with a stack of iterators: memory grows with the depth
    (at most ``MAX_DEPTH``), never with the size; a container too large is not walked."""
    leaf = _leaf_problem(value)
    if leaf is not None:
        return leaf, None
    if not isinstance(value, dict | list):
        return None
    if len(value) > MAX_ITEMS:
        return "size", None
    path: list[str | int] = []  # the keys leading to the container on top of the stack
    stack = [_items(value)]
    while stack:
        step = next(stack[-1], None)
        if step is None:
            stack.pop()
            if path:
                path.pop()
            continue
        key, child = step
        if isinstance(key, str) and not key.isascii() and not _encodable(key):
            return "key", field_name(path)
        if isinstance(child, dict | list):
            if len(stack) >= MAX_DEPTH:
                return "depth", field_name([*path, key])
            if len(child) > MAX_ITEMS:
                return "size", field_name([*path, key])
            path.append(key)
            stack.append(_items(child))
        else:
            leaf = _leaf_problem(child)
            if leaf is not None:
                return leaf, field_name([*path, key])
    return None


def _items(container: dict[str, Any] | list[Any]) -> Iterator[tuple[str | int, Any]]:
    return iter(container.items()) if isinstance(container, dict) else enumerate(container)


def _leaf_problem(value: Any) -> str | None:
    if isinstance(value, str):
        return None if value.isascii() or _encodable(value) else "surrogate"
    if isinstance(value, float):
        return None if math.isfinite(value) else "number"
    return None


def field_name(path: list[str | int]) -> str | None:
    """``image_urls[0]``, ``fields.prompt``: a path as the error bodies name fields."""
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
