"""Divergences as they happen: one log line each, kept in memory, counted per rule."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .checks import Finding


@dataclass(frozen=True)
class Divergence:
    rule: str
    expected: str  # what the spec says
    seen: str  # what was seen
    method: str
    path: str
    status: int | None  # the status the upstream answered (None: no answer)
    task_id: str | None
    at: float  # Unix time
    replaced: bool = False  # --strict answered 502 instead

    def line(self) -> str:
        task = f" task {self.task_id}" if self.task_id else ""
        replaced = " [answer replaced by 502]" if self.replaced else ""
        return (
            f"mockserver proxy: DIVERGENCE {self.rule}: {self.method} {self.path}{task}: "
            f"spec: {self.expected}; seen: {self.seen}{replaced}"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DivergenceLog:
    """Every divergence, logged once as it happens; the newest ``keep`` kept, all counted."""

    def __init__(self, emit: Callable[[str], None], keep: int = 10_000) -> None:
        self.emit = emit
        self.items: deque[Divergence] = deque(maxlen=keep)
        self.counts: Counter[str] = Counter()
        self.confirmed: Counter[str] = Counter()  # refusals the upstream agreed with, by rule
        self._lock = threading.Lock()

    def confirm(self, rules: list[str]) -> None:
        """The upstream refused what the fake refuses: each rule is confirmed, not a divergence."""
        with self._lock:
            self.confirmed.update(rules)

    def add(
        self,
        finding: Finding,
        *,
        method: str,
        path: str,
        status: int | None,
        task_id: str | None,
        replaced: bool,
        scrub: Callable[[str], str],
    ) -> Divergence:
        divergence = Divergence(
            rule=finding.rule,
            expected=scrub(finding.expected),
            seen=scrub(finding.seen),
            method=scrub(method),
            path=scrub(path),
            status=status,
            task_id=scrub(task_id) if task_id is not None else None,
            at=time.time(),
            replaced=replaced,
        )
        with self._lock:
            self.items.append(divergence)
            self.counts[finding.rule] += 1
        self.emit(divergence.line())
        return divergence

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            items = [d.to_dict() for d in self.items]
            counts = dict(sorted(self.counts.items()))
            confirmed = dict(sorted(self.confirmed.items()))
        return {
            "total": sum(counts.values()),
            "counts": counts,
            "divergences": items,
            "confirmed": {"total": sum(confirmed.values()), "counts": confirmed},
        }

    def summary(self) -> str:
        total, agreed = sum(self.counts.values()), sum(self.confirmed.values())
        confirmed = f"; {agreed} refusal(s) the upstream confirmed" if agreed else ""
        if not total:
            return f"mockserver proxy: no divergence from spec/openapi.yaml{confirmed}"
        parts = ", ".join(f"{rule} {n}" for rule, n in sorted(self.counts.items()))
        return f"mockserver proxy: {total} divergence(s) from spec/openapi.yaml: {parts}{confirmed}"
