"""Plain records the store keeps. No behaviour beyond (de)serialisation."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from .jsonio import dumps

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
        """Amount charged = unit price × quantity (midjourney-video.md, "billing")."""
        return self.unit_price * self.quantity

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskRecord:
        return cls(**data)

    def pack(self) -> tuple[Any, ...]:
        """A flat tuple of plain values (params as JSON): compact, and never walked by the GC."""
        values = [getattr(self, name) for name in _FIELDS]
        values[-1] = dumps(self.params).decode() if self.params else ""
        return tuple(values)

    @classmethod
    def unpack(cls, packed: tuple[Any, ...]) -> TaskRecord:
        values = list(packed)
        values[-1] = json.loads(values[-1]) if values[-1] else {}  # the standard parser: big integers stay exact
        return cls(*values)


_FIELDS = tuple(f.name for f in dataclasses.fields(TaskRecord))
assert _FIELDS[-1] == "params", "pack() keeps params last"


@dataclass(frozen=True)
class UploadRecord:
    id: str
    account: str
    filename: str
    content_type: str
    size: int
    created_at: float
    data: bytes = field(repr=False)
