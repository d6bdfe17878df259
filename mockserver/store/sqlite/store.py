"""A store in one SQLite file: survives restarts, shared by worker processes on one host.

Every method once, on one regime (``writer.SQLiteWriter``): reads run at once on the event loop (one
snapshot per turn of the loop); every write is a step of ``steps`` made by the group-commit writer, many
in one ``BEGIN IMMEDIATE`` transaction, each in a savepoint of its own, so concurrent workers agree and
each step is all or nothing (``replace_state`` too: readers see the old state or the new).

A file that cannot be written (read-only, full) or stays locked by another process longer than
``timeout`` answers 503 (``StoreUnavailable``), and the store recovers by itself once the file is usable.
A file that cannot be opened yet does not make the constructor fail: every call answers 503 until it can
be opened (``mockserver serve`` checks the store's health first).

**Shared settings** (``base.Shared``): ``refresh`` reads their version (bumped by triggers on every change,
from any worker) once per turn of each event loop, and the settings themselves only when it moved.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from ...core.canned import CannedResponse
from ...core.errors import StoreUnavailable
from ...core.faults import FaultRule
from ...core.journal import Entry
from ...core.records import TaskRecord, UploadRecord
from ..base import Limit, Overdraft, Shared, Spending, StateImage, UploadRefused, UploadUsage
from . import steps
from .writer import SQLiteWriter


def _rules(db: sqlite3.Connection) -> list[FaultRule]:
    return [FaultRule.from_dict(json.loads(data)) for (data,) in db.execute("SELECT data FROM rules ORDER BY pos")]


def _canned(db: sqlite3.Connection) -> list[CannedResponse]:
    rows = db.execute("SELECT data, fired FROM canned ORDER BY pos")
    return [CannedResponse.from_dict({**json.loads(data), "fired": fired}) for data, fired in rows]


def _account_settings(db: sqlite3.Connection) -> dict[str, dict[str, Any]]:
    return {account: json.loads(data) for account, data in db.execute("SELECT account, data FROM account_settings")}


def _shared_settings(db: sqlite3.Connection, known: Shared) -> Shared:
    """The shared settings, in the caller's snapshot: ``known`` when their version has not moved."""
    row = db.execute("SELECT version FROM shared_version WHERE id = 1").fetchone()
    if row is not None and row[0] == known.version:
        return known
    clock = db.execute("SELECT offset, frozen_at FROM clock WHERE id = 1").fetchone()
    return Shared(
        row[0] if row is not None else None,
        (float(clock[0]), clock[1]) if clock else (0.0, None),
        tuple(_rules(db)),
        tuple(_canned(db)),
        _account_settings(db),
    )


class SQLiteStore:
    def __init__(self, path: str | Path, journal_size: int = 10_000, timeout: float = 2.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.journal_size = journal_size
        self.timeout = timeout
        self.writer = SQLiteWriter(self.path, timeout, journal_size)
        self.guard = self.writer.guard
        self._shared = Shared(None, (0.0, None), (), (), {})
        self._fresh: set[asyncio.AbstractEventLoop] = set()  # the loops that read the version in this turn
        with suppress(StoreUnavailable):
            self._load_shared()  # now if it can; else on the first call that finds the file usable

    @property
    def journal_off(self) -> bool:
        """The disk was full at the last write: no journal entry is written until a write succeeds."""
        return self.writer.journal_off

    @journal_off.setter
    def journal_off(self, value: bool) -> None:
        self.writer.journal_off = value

    def close(self) -> None:
        self.writer.close()

    async def ping(self) -> None:
        """A write, undone: a file that is read-only or locked elsewhere fails here too."""
        with suppress(steps.Undone):
            await self.writer.write(steps.ping)

    # -- shared settings ------------------------------------------------------------------------------

    def shared(self) -> Shared:
        return self._shared

    async def refresh(self) -> None:
        """The version is read once per turn of each event loop: every request that arrived after a change
        was committed (by any worker) runs in a later turn than the change, and reads it again."""
        loop = asyncio.get_running_loop()
        if loop in self._fresh:
            return
        self._load_shared()
        if self._fresh:
            self._fresh = {known for known in self._fresh if not known.is_closed()}  # none kept for a closed loop
        self._fresh.add(loop)
        loop.call_soon(self._fresh.discard, loop)

    def _load_shared(self) -> None:
        known = self._shared
        self._shared = self.writer.read(lambda db: _shared_settings(db, known))

    def note_clock(self, state: tuple[float, float | None]) -> None:
        """This process moved the clock: its copy follows at once."""
        self._shared = self._shared._replace(clock=state)

    async def set_clock_state(self, offset: float, frozen_at: float | None) -> None:
        await self.writer.write(lambda db: steps.set_clock(db, offset, frozen_at))
        self.note_clock((offset, frozen_at))

    # -- tasks ------------------------------------------------------------------------------------------

    async def put_task_once(self, record: TaskRecord, key: str | None, limit: Limit = None) -> str | Overdraft:
        found: str | Overdraft = await self.writer.write(lambda db: steps.put_once(db, record, key, limit))
        return found

    async def put_task(self, record: TaskRecord) -> None:
        await self.writer.write(lambda db: steps.put_task(db, record))

    async def get_task(self, task_id: str) -> TaskRecord | None:
        row = self.writer.read_one("SELECT data FROM tasks WHERE id = ?", (task_id,))
        return TaskRecord.from_json(row[0]) if row else None

    async def update_task(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None:
        found: TaskRecord | None = await self.writer.write(lambda db: steps.update_task(db, task_id, change))
        return found

    async def tasks(self, account: str | None = None) -> list[TaskRecord]:
        if account is None:
            rows = self.writer.read_all("SELECT data FROM tasks ORDER BY rowid")
        else:
            rows = self.writer.read_all("SELECT data FROM tasks WHERE account = ? ORDER BY rowid", (account,))
        return [TaskRecord.from_json(r[0]) for r in rows]

    async def task_count(self, account: str | None = None) -> int:
        if account is None:
            row = self.writer.read_one("SELECT COALESCE(SUM(n), 0) FROM task_counts")
        else:
            row = self.writer.read_one("SELECT n FROM task_counts WHERE account = ?", (account,))
        return int(row[0]) if row else 0

    async def task_page(
        self, account: str | None = None, *, newest_first: bool = False, offset: int = 0, limit: int | None = None
    ) -> list[TaskRecord]:
        order = "DESC" if newest_first else "ASC"
        window = (-1 if limit is None else limit, offset)
        if account is None:
            sql = f"SELECT data FROM tasks ORDER BY rowid {order} LIMIT ? OFFSET ?"  # noqa: S608
            rows = self.writer.read_all(sql, window)
        else:
            sql = f"SELECT data FROM tasks WHERE account = ? ORDER BY rowid {order} LIMIT ? OFFSET ?"  # noqa: S608
            rows = self.writer.read_all(sql, (account, *window))
        return [TaskRecord.from_json(r[0]) for r in rows]

    async def evict_tasks(self, created_before: float, limit: int | None = None) -> int:
        return int(await self.writer.write(lambda db: steps.evict_tasks(db, created_before, limit)))

    async def idempotent_task(self, account: str, key: str) -> str | None:
        row = self.writer.read_one("SELECT task_id FROM idempotency WHERE account = ? AND key = ?", (account, key))
        return str(row[0]) if row else None

    # -- uploads ----------------------------------------------------------------------------------------

    async def put_upload(
        self,
        upload: UploadRecord,
        *,
        account_quota: int | None = None,
        total_quota: int | None = None,
        evict_by: float | None = None,
    ) -> UploadRefused | None:
        refused: UploadRefused | None = await self.writer.write(
            lambda db: steps.put_upload(db, upload, account_quota, total_quota, evict_by)
        )
        return refused

    async def upload_usage(self, account: str) -> UploadUsage:
        return self.writer.read(lambda db: steps.upload_usage(db, account))

    async def get_upload(self, upload_id: str) -> UploadRecord | None:
        row = self.writer.read_one("SELECT meta, data FROM uploads WHERE id = ?", (upload_id,))
        return UploadRecord(**json.loads(row[0]), data=bytes(row[1])) if row else None

    async def upload_records(self) -> list[UploadRecord]:
        rows = self.writer.read_all("SELECT meta FROM uploads ORDER BY rowid")
        return [UploadRecord(**json.loads(r[0]), data=b"") for r in rows]

    async def delete_upload(self, upload_id: str) -> bool:
        return bool(await self.writer.write(lambda db: steps.delete(db, "uploads", upload_id)))

    # -- the journal --------------------------------------------------------------------------------

    def append_entry(self, entry: Entry) -> None:
        self.writer.append_entry(entry)

    async def append_journal(self, entry: dict[str, Any]) -> int:
        """Keep ``entry``, after the entries queued before it; 0 when it is not kept, the disk having been
        full since the last write."""
        if self.writer.journal_off:
            return 0
        row = (entry.get("account"), json.dumps(entry))
        return int(await self.writer.write(lambda db: steps.append_journal(db, [row], self.journal_size), journal=True))

    async def journal(self, since: int = 0) -> list[dict[str, Any]]:
        await self.writer.flush_journal()  # entries queued for the writer: written before they are read
        rows = self.writer.read_all(
            "SELECT seq, data FROM journal WHERE seq > ? AND seq > (SELECT COALESCE(MAX(seq), 0) FROM journal) - ?"
            " ORDER BY seq",
            (since, self.journal_size),
        )
        return [{**json.loads(data), "seq": seq} for seq, data in rows]

    # -- faults -------------------------------------------------------------------------------------

    async def put_fault_rule(self, rule: FaultRule) -> None:
        await self.writer.write(lambda db: steps.put_fault_rule(db, rule))

    async def fault_rules(self) -> list[FaultRule]:
        return self.writer.read(_rules)

    async def delete_fault_rule(self, rule_id: str) -> bool:
        return bool(await self.writer.write(lambda db: steps.delete(db, "rules", rule_id)))

    async def fire_fault_rule(self, rule_id: str) -> bool:
        return bool(await self.writer.write(lambda db: steps.fire(db, "rules", rule_id)))

    async def fault_rule_counts(self) -> dict[str, int]:
        return {rule_id: int(fired) for rule_id, fired in self.writer.read_all("SELECT id, fired FROM rules")}

    # -- canned responses ---------------------------------------------------------------------------

    async def put_canned_response(self, response: CannedResponse) -> None:
        await self.writer.write(lambda db: steps.put_canned_response(db, response))

    async def canned_responses(self) -> list[CannedResponse]:
        return self.writer.read(_canned)

    async def delete_canned_response(self, response_id: str) -> bool:
        return bool(await self.writer.write(lambda db: steps.delete(db, "canned", response_id)))

    async def fire_canned_response(self, response_id: str) -> bool:
        return bool(await self.writer.write(lambda db: steps.fire(db, "canned", response_id)))

    # -- per-account settings -----------------------------------------------------------------------

    async def account_settings(self, account: str) -> dict[str, Any]:
        row = self.writer.read_one("SELECT data FROM account_settings WHERE account = ?", (account,))
        found: dict[str, Any] = json.loads(row[0]) if row else {}
        return found

    async def set_account_settings(self, account: str, settings: dict[str, Any]) -> None:
        await self.writer.write(lambda db: steps.set_account_settings(db, account, settings))

    async def all_account_settings(self) -> dict[str, dict[str, Any]]:
        return self.writer.read(_account_settings)

    # -- rate limiting, balances --------------------------------------------------------------------

    async def hit(self, account: str, window: int) -> int:
        return int(await self.writer.write(lambda db: steps.hit(db, account, window)))

    async def set_balance(self, account: str, amount: float | None) -> None:
        await self.writer.write(lambda db: steps.set_balance(db, account, amount))

    async def balances(self) -> dict[str, float | None]:
        return {account: amount for account, amount in self.writer.read_all("SELECT account, amount FROM balances")}

    async def spending(self, account: str, now: float) -> Spending:
        row = self.writer.read_one(  # one statement: one snapshot, whatever other workers move meanwhile
            "SELECT (SELECT charged FROM spend WHERE account = ?), (SELECT refunded FROM spend WHERE account = ?), "
            "(SELECT SUM(amount) FROM refunds WHERE account = ? AND due <= ?)",
            (account, account, account, now),
        )
        return Spending(float(row[0] or 0.0), float(row[1] or 0.0) + float(row[2] or 0.0))

    # -- the whole state ----------------------------------------------------------------------------

    async def reset(self, account: str | None = None) -> None:
        await self.writer.write(lambda db: steps.reset(db, account))

    async def replace_state(self, image: StateImage) -> None:
        """One step (the journal entries queued before it are written first, and emptied with the rest)."""
        await self.writer.write(lambda db: steps.replace_state(db, image))
