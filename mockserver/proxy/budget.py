"""The spend cap: at most N paid tasks reach the upstream, counted before they are sent.

A paid submission takes a slot *before* it is forwarded (under a lock, so
clients racing past the cap cannot all slip through); the slot is given back
only when the upstream's answer proves no task was made (a 4xx refusal, or an
idempotent replay of an earlier task). An answer that leaves it unknown (a 5xx,
a broken connection) keeps the slot: the cap is never exceeded, whatever the
upstream does. Credits are unit price × quantity from the price table
(``core.ledger``); a task seen failing is refunded, as the provider does.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..core.ledger import unit_price


@dataclass
class KeySpend:
    tasks: int = 0
    clips: int = 0
    credits: float = 0.0
    refunded: float = 0.0
    uncertain: int = 0


class SpendCap:
    def __init__(self, limit: int, prices: Mapping[str, float], usd_per_credit: float = 0.1) -> None:
        if limit < 0:
            raise ValueError("max_paid_tasks must be >= 0")
        self.limit = limit
        self.prices = dict(prices)
        self.usd_per_credit = usd_per_credit
        self.used = 0  # slots taken: accepted, uncertain and in flight
        self.refused = 0
        self.by_key: dict[str, KeySpend] = {}
        self._lock = threading.Lock()

    def reserve(self, price_key: str) -> bool:
        """Take a slot for a paid submission about to be forwarded; False when the cap is reached."""
        with self._lock:
            if self.used >= self.limit:
                self.refused += 1
                return False
            self.used += 1
            self.by_key.setdefault(price_key, KeySpend())
            return True

    def release(self) -> None:
        """The upstream made no task (it refused, or replayed an earlier one): the slot is free again."""
        with self._lock:
            self.used = max(0, self.used - 1)

    def uncertain(self, price_key: str) -> None:
        """No clear answer: the task may exist upstream; its slot stays taken."""
        with self._lock:
            self.by_key.setdefault(price_key, KeySpend()).uncertain += 1

    def accepted(self, price_key: str, quantity: int) -> float:
        """A task was made: charge it. Returns its charge in credits."""
        charge = unit_price(self.prices, price_key) * quantity
        with self._lock:
            spend = self.by_key.setdefault(price_key, KeySpend())
            spend.tasks += 1
            spend.clips += quantity
            spend.credits += charge
        return charge

    def refund(self, price_key: str, quantity: int) -> float:
        amount = unit_price(self.prices, price_key) * quantity
        with self._lock:
            self.by_key.setdefault(price_key, KeySpend()).refunded += amount
        return amount

    # -- reading ----------------------------------------------------------------------------

    @property
    def credits(self) -> float:
        return sum(s.credits - s.refunded for s in self.by_key.values())

    @property
    def usd(self) -> float:
        return self.credits * self.usd_per_credit

    @property
    def tasks(self) -> int:
        return sum(s.tasks for s in self.by_key.values())

    def summary(self) -> dict[str, Any]:
        return {
            "max_paid_tasks": self.limit,
            "used": self.used,
            "tasks": self.tasks,
            "refused_locally": self.refused,
            "credits": round(self.credits, 6),
            "usd": round(self.usd, 6),
            "usd_per_credit": self.usd_per_credit,
            "by_price_key": {
                key: {
                    "tasks": s.tasks,
                    "clips": s.clips,
                    "credits": round(s.credits, 6),
                    "refunded": round(s.refunded, 6),
                    "uncertain": s.uncertain,
                }
                for key, s in sorted(self.by_key.items())
            },
        }

    def spent_line(self) -> str:
        return f"{self.credits:g} credit(s) ({self.usd:.2f} USD)"

    def report(self) -> str:
        """One line on what the run spent, for the end of a run."""
        parts = [
            f"{key} {s.tasks} task(s), {s.clips} clip(s), {s.credits - s.refunded:g} credit(s)"
            + (f" ({s.refunded:g} refunded)" if s.refunded else "")
            + (f", {s.uncertain} unanswered (may have been charged)" if s.uncertain else "")
            for key, s in sorted(self.by_key.items())
            if s.tasks or s.uncertain
        ]
        detail = f": {'; '.join(parts)}" if parts else ""
        return (
            f"mockserver proxy: spent {self.spent_line()} on {self.tasks} paid task(s) "
            f"(--max-paid-tasks {self.limit}){detail}; {self.refused} paid submission(s) refused locally"
        )

    def refusal_message(self, price_key: str) -> str:
        if self.limit == 0:
            return (
                f"mockserver proxy: paid submission ({price_key}) not forwarded: --max-paid-tasks is 0 (the default), "
                "so no paid task reaches the upstream; restart the proxy with --max-paid-tasks N to allow N paid tasks"
            )
        return (
            f"mockserver proxy: paid submission ({price_key}) not forwarded: the cap of {self.limit} paid task(s) "
            f"is used ({self.used} of {self.limit}); restart the proxy with a higher --max-paid-tasks to allow more"
        )
