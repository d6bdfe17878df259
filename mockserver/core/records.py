"""Plain records the store keeps. No behaviour beyond (de)serialisation."""

from __future__ import annotations

import dataclasses
import json
import operator
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from .jsonio import kept

VIDEO = "VIDEO"
IMAGINE = "IMAGINE"

# How a task ends. ``never`` keeps it running (a fault a client must survive).
SUCCESS_OUTCOME = "success"
FAILURE_OUTCOME = "failure"
NEVER_OUTCOME = "never"
CANCEL_OUTCOME = "cancel"  # ends in FAILURE, shown as ``cancelled`` in the envelope, refunded


@dataclass(frozen=True)
class TaskRecord:
    id: str
    account: str
    action: str
    created_at: float
    duration: float
    prompt: str
    mode: str
    clips: int
    price_key: str
    quantity: int
    video_type: str | None = None
    outcome: str = SUCCESS_OUTCOME
    fail_reason: str = ""
    unit_price: float = 0.0
    # Poll-count transition (as moto's state manager): final on the N-th poll, not by time.
    finish_after_polls: int | None = None
    polls: int = 0
    settled_at: float | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def charge(self) -> float:
        """Amount charged = unit price × quantity (docs/evidence.md, "prices")."""
        return self.unit_price * self.quantity

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskRecord:
        return cls(**data)

    @classmethod
    def of(cls, values: dict[str, Any]) -> TaskRecord:
        """``TaskRecord(**values)`` for a fresh mapping of exactly every field (a submission makes one per
        request): the mapping becomes the record's own ``__dict__``, with no check and no copy. Its one
        caller, ``Fake._new_record``, writes every field in one literal; tests/core/test_records.py checks
        that the records it makes have every field and no other."""
        record = object.__new__(cls)
        object.__setattr__(record, "__dict__", values)
        return record

    def to_json(self) -> str:
        """The record as text for a store (SQLite keeps it): ``pack``'s array of values."""
        return self.pack().decode()

    @classmethod
    def from_json(cls, text: str | bytes) -> TaskRecord:
        """A record from ``to_json``, or from ``json.dumps(to_dict())`` (an object: what stores kept before)."""
        first = text[:1]
        if first in ("{", b"{"):
            long = _LONG_TEXT.search(text) if isinstance(text, str) else _LONG_BYTES.search(text)
            return cls(**(json.loads(text) if long else orjson.loads(text)))  # orjson reads a long integer as a float
        return cls.unpack(text.encode() if isinstance(text, str) else text)

    def pack(self) -> bytes:
        """The values as one JSON array: compact, and bytes, which the garbage collector never walks
        (nor a dict holding only bytes), so a store of a million tasks adds no pauses. A record
        orjson cannot write (an integer beyond 64 bits in its params) is written by the standard
        library, marked with a leading ``~``."""
        values = _VALUES(self)
        try:
            return kept(orjson.dumps(values))  # the store keeps them
        except TypeError:
            return b"~" + json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def unpack(cls, packed: bytes) -> TaskRecord:
        # The fields straight into the instance: what the generated __init__ does one frozen
        # setattr at a time (a poll unpacks one record; this takes a fifth of the time).
        values = json.loads(packed[1:]) if packed[:1] == b"~" else orjson.loads(packed)
        record = object.__new__(cls)
        record.__dict__.update(zip(_FIELDS, values, strict=True))
        return record


_FIELDS = tuple(f.name for f in dataclasses.fields(TaskRecord))
assert _FIELDS[-1] == "params", "pack() keeps params last"
_VALUES = operator.attrgetter(*_FIELDS)
_LONG_TEXT = re.compile(r"[0-9]{20}")
_LONG_BYTES = re.compile(rb"[0-9]{20}")


@dataclass(frozen=True)
class UploadRecord:
    id: str
    account: str
    filename: str
    content_type: str
    size: int
    created_at: float
    data: bytes = field(repr=False)
