"""Credits: the price table, and what each account spent, derived from its tasks.

A charge is made when a task is accepted (unit price × quantity); a task that
ends in FAILURE is refunded (docs/evidence.md, "statuses": "the charge is refunded
automatically"). Both are read off the task records and the clock, so the
ledger can never disagree with the tasks.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .lifecycle import Status, view
from .records import CANCEL_OUTCOME, FAILURE_OUTCOME, TaskRecord

DEFAULT_PRICES = Path(__file__).resolve().parent / "prices.yaml"
NEVER_CHARGED = frozenset({"midjourney@video-fast", "midjourney@video-turbo"})


def load_prices(path: str | Path | None = None, overrides: str | None = None) -> dict[str, float]:
    """The price table: the packaged defaults, a YAML/JSON file on top, then ``KEY=VALUE,…`` overrides.

    Every value must be a finite number >= 0, and every key one of the packaged table's (a
    misspelt key would otherwise be ignored while the real one kept its default): ``ValueError``.
    """
    table: dict[str, float] = dict(_packaged())
    if path is not None:
        for key, value in _table_in(path).items():
            table[_known(key, table, path)] = _price(key, value)
    for item in (overrides or "").split(","):
        if item.strip():
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"prices: expected KEY=VALUE, got {item!r}")
            table[_known(key.strip(), table, "prices")] = _price(key, value)
    for key in NEVER_CHARGED:
        table[key] = 0.0
    return table


@cache
def _packaged() -> dict[str, float]:
    """The packaged table, read once per process (every fresh fake in a test run uses it)."""
    return {str(key): _price(key, value) for key, value in _table_in(DEFAULT_PRICES).items()}


def _table_in(source: str | Path) -> dict[Any, Any]:
    try:
        data = yaml.safe_load(Path(source).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"price table {source}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a price table is a mapping of price key to unit price")
    return data


def _known(key: Any, table: Mapping[str, float], where: Any) -> str:
    """``key`` if the packaged table (read first, into ``table``) prices it."""
    name = str(key)
    if name not in table:
        raise ValueError(f"{where}: unknown price key {name!r} (known: {', '.join(sorted(table))})")
    return name


def _price(key: Any, value: Any) -> float:
    try:
        price = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"price of {key}: {value!r} is not a number") from None
    if not math.isfinite(price) or price < 0:
        raise ValueError(f"price of {key} must be a finite number >= 0 (got {value!r})")
    return price


def unit_price(prices: Mapping[str, float], key: str) -> float:
    return 0.0 if key in NEVER_CHARGED else prices.get(key, 0.0)


@dataclass(frozen=True)
class Entry:
    account: str
    task_id: str
    kind: str  # charge | refund
    price_key: str
    quantity: int
    amount: float
    at: float


def entries(records: Iterable[TaskRecord], now: float) -> list[Entry]:
    out: list[Entry] = []
    for r in records:
        out.append(Entry(r.account, r.id, "charge", r.price_key, r.quantity, r.charge, r.created_at))
        state = view(r, now)
        if state.status is Status.FAILURE and r.charge:
            out.append(Entry(r.account, r.id, "refund", r.price_key, r.quantity, -r.charge, state.finished_at or now))
    out.sort(key=lambda e: (e.at, e.task_id, e.kind))
    return out


def spent(records: Iterable[TaskRecord], now: float) -> float:
    return sum(e.amount for e in entries(records, now))


def refund_due(record: TaskRecord) -> float | None:
    """When the refund of ``record`` becomes visible: the time its lifecycle ends in FAILURE
    (``entries`` lists the refund from then on). None when it is never refunded (no charge, or an
    outcome other than failure) or not known yet (a poll-count task before the poll that settles it).
    The stores keep their running totals by it."""
    if not record.charge or record.outcome not in (FAILURE_OUTCOME, CANCEL_OUTCOME):
        return None  # (the usual case, known without working out the lifecycle)
    final = view(record, math.inf)
    return final.finished_at if final.status is Status.FAILURE else None


def _blank_account() -> dict[str, Any]:
    return {"charged": 0.0, "refunded": 0.0, "spent": 0.0, "tasks": 0, "by_price_key": defaultdict(float)}


def _entries_of(record: TaskRecord, now: float) -> Iterator[Entry]:
    r = record
    yield Entry(r.account, r.id, "charge", r.price_key, r.quantity, r.charge, r.created_at)
    if r.charge and r.outcome in (FAILURE_OUTCOME, CANCEL_OUTCOME):
        state = view(r, now)
        if state.status is Status.FAILURE:
            yield Entry(r.account, r.id, "refund", r.price_key, r.quantity, -r.charge, state.finished_at or now)


def _order(e: Entry) -> tuple[float, str, str]:
    return e.at, e.task_id, e.kind


def summary(
    records: Iterable[TaskRecord],
    now: float,
    balances: Mapping[str, float | None],
    default_balance: float | None,
    *,
    offset: int = 0,
    limit: int | None = None,
) -> dict[str, Any]:
    """What each account was charged, refunded and has left; the whole run's total; the entries
    (all of them, or the page ``offset``, ``limit`` of them in time order)."""
    found = Summary(now, offset=offset, limit=limit)
    found.add(records)
    return found.result(balances, default_balance)


class Summary:
    """``summary`` fed a store's pages as they come: the records are read once, and with a ``limit``
    no more than ``offset + limit`` entries are held, however many tasks there are."""

    def __init__(self, now: float, *, offset: int = 0, limit: int | None = None) -> None:
        self.now, self.offset, self.limit = now, offset, limit
        self.accounts: defaultdict[str, dict[str, Any]] = defaultdict(_blank_account)
        self.kept: list[Entry] = []

    def add(self, records: Iterable[TaskRecord]) -> None:
        every = ((e, record.params.get("key_id")) for record in records for e in _entries_of(record, self.now))
        totalled = _totalled(every, self.accounts)  # read to the end whatever is kept: the totals need every entry
        if self.limit is None:
            self.kept.extend(totalled)
            return
        self.kept = heapq.nsmallest(self.offset + self.limit, itertools.chain(self.kept, totalled), key=_order)
        for _ in totalled:  # (nsmallest stops early when it is to keep none)
            pass

    def result(self, balances: Mapping[str, float | None], default_balance: float | None) -> dict[str, Any]:
        kept = sorted(self.kept, key=_order)[self.offset :]
        return _summed(self.accounts, balances, default_balance, kept)


def _totalled(items: Iterable[tuple[Entry, str | None]], accounts: defaultdict[str, dict[str, Any]]) -> Iterator[Entry]:
    """``items``, each added to its account's totals on the way (and to its key's, for a key that
    shares the account: ``by_key``)."""
    for e, key in items:
        acct = accounts[e.account]
        if key is not None:
            by_key = acct.setdefault("by_key", {})
            by_key[key] = by_key.get(key, 0.0) + e.amount
        if e.kind == "charge":
            acct["charged"] += e.amount
            acct["tasks"] += 1
        else:
            acct["refunded"] -= e.amount
        acct["spent"] += e.amount
        acct["by_price_key"][e.price_key] += e.amount
        yield e


def _summed(
    accounts: defaultdict[str, dict[str, Any]],
    balances: Mapping[str, float | None],
    default_balance: float | None,
    all_entries: list[Entry],
) -> dict[str, Any]:
    for name in balances:
        accounts.setdefault(name, _blank_account())  # listed though it has no task
    result = {}
    for name, acct in sorted(accounts.items()):
        limit = balances.get(name, default_balance)
        acct["by_price_key"] = dict(acct["by_price_key"])
        acct["balance"] = limit
        acct["remaining"] = None if limit is None else limit - acct["spent"]
        result[name] = acct
    return {
        "total_spent": sum(a["spent"] for a in result.values()),
        "accounts": result,
        "entries": [e.__dict__ for e in all_entries],
    }


def balance_answer(remaining: float | None, spent: float, per_unit: float = 1.0) -> dict[str, Any]:
    """``GET /v1/balance`` and ``/v1/user/balance`` as the provider's account pages show them
    (docs/evidence.md, "balance endpoints"): an account with no balance set is unlimited (``remain_balance``
    -1, ``unlimited_quota`` true); ``used_balance`` is what it spent. ``per_unit``: the unit's
    worth in credits (1 for credits, ``usd_per_credit`` for USD)."""
    used = round(max(spent, 0.0) * per_unit, 6)
    if remaining is None:
        return {"success": True, "remain_balance": -1, "used_balance": used, "unlimited_quota": True}
    return {"success": True, "remain_balance": round(remaining * per_unit, 6), "used_balance": used,
            "unlimited_quota": False}  # fmt: skip


UNKNOWN_KEY = {"success": False, "message": "Failed to get token info"}  # the token page's 200 "Token Not Found"
