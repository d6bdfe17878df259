"""A store in one SQLite file: survives restarts, shared by worker processes on one host.

WAL journal, one connection per process guarded by a lock, ``BEGIN IMMEDIATE``
for every read-modify-write, so concurrent workers agree. A committed write
survives the process being killed (``synchronous=NORMAL`` under WAL loses
nothing on a process crash, only on a power cut).

A file that cannot be written (read-only, full) or stays locked by another
process longer than ``timeout`` (SQLite's busy timeout) raises
``StoreUnavailable`` (``guard.Guard``); the connection is opened again on the
next call (a read-only file opens read-only, and stays so until reopened), so
the store recovers by itself once the file is writable again. A file that
cannot be opened yet does not make the constructor fail: every call answers 503
until it can be opened (``mockserver serve`` checks the store's health first).

**A full disk** (SQLITE_FULL, or the I/O errors of a file that cannot grow): the tasks come
before the journal. A write that fails for want of space makes room (``make_room``): the WAL
is checkpointed and truncated, the journal's rows are deleted (their pages go to the file's
free list, where the next writes find them), and no journal entry is written until a write
succeeds again; then the write is tried once more. Without this, the journal's writes (one
per request) took any space freed before a checkpoint came, and submissions stayed 503.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ...core.canned import CannedResponse
from ...core.errors import StoreUnavailable
from ...core.faults import FaultRule
from ...core.records import TaskRecord, UploadRecord
from ..aio import HotStore
from ..base import Limit, Overdraft, Spending, StateImage, UploadRefused, UploadUsage, upload_refusal
from ..guard import Guard
from . import steps
from .hot import SQLiteHot
from .schema import SCHEMA_VERSION, migrate, out_of_space

ROOM_WAIT_MS = 50  # longest making room waits for other connections (it may run on the event loop)


class SQLiteStore:
    def __init__(self, path: str | Path, journal_size: int = 10_000, timeout: float = 2.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.journal_size = journal_size
        self.timeout = timeout
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self.guard = Guard("sqlite", (sqlite3.OperationalError,), on_error=self._forget_connection)
        self._last_clock: tuple[float, float | None] = (0.0, None)
        self._appends = 0
        self.journal_off = False  # a write found no room: no entry is written until a write succeeds
        self._hot: SQLiteHot | None = None
        with suppress(StoreUnavailable), self._lock, self.guard:
            self.connection()  # now if it can; else on the first call that finds the file usable

    def connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            try:
                db.execute(f"PRAGMA busy_timeout={max(1, round(self.timeout * 1000))}")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    migrate(db)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _forget_connection(self, error: BaseException) -> None:
        """After a failure other than a lock held elsewhere, open the file afresh on the next call."""
        name = str(getattr(error, "sqlite_errorname", ""))
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or self._db is None:
            return
        with suppress(sqlite3.Error):
            self._db.close()
        self._db = None

    def replace_state(self, image: StateImage) -> None:
        """The wipe and every item in one transaction on the store's own connection (the hot store's
        writer finds the lock taken and tries again, as for any other writer): a failure rolls all of it
        back, and readers (under WAL) see the last commit, the old state or the new."""
        if self._hot is not None:
            self._hot.flush_journal()  # entries queued before the replace are emptied with the rest
        with self.write() as db:
            steps.wipe(db)
            for record in image.tasks:
                steps.put_task(db, record)
            for upload in image.uploads:
                steps.upsert_upload(db, upload)
            db.executemany("INSERT OR REPLACE INTO balances VALUES (?, ?)", image.balances.items())
            for account, values in image.account_settings.items():
                steps.set_account_settings(db, account, values)
            for rule in image.fault_rules:
                steps.put_fault_rule(db, rule)
            for response in image.canned_responses:
                steps.put_canned_response(db, response)
        if self._hot is not None:
            self._hot.end_read()  # this turn's reads on the hot connection see the new state too

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction: other writers wait (up to the timeout), nobody sees half of it."""
        with self._lock, self.guard:
            db = self.connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
                self.journal_off = False  # a write succeeded: there is room again
            except BaseException:
                if db.in_transaction:
                    with suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

    def make_room(self) -> None:
        """A write found no room: checkpoint the WAL and truncate it (its space goes back to the disk),
        delete the journal's rows (their pages go to the file's free list, for the tasks), and write no
        journal entry until a write succeeds again. Best effort, each step waiting ``ROOM_WAIT_MS`` at
        most for other connections (readers, another worker's writer)."""
        self.journal_off = True
        if self._hot is not None:
            self._hot.end_read()  # this process's reader leaves the WAL first
        with self._lock, suppress(sqlite3.Error):
            db = self.connection()
            db.execute(f"PRAGMA busy_timeout={ROOM_WAIT_MS}")
            try:
                with suppress(sqlite3.Error):
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                db.execute("DELETE FROM journal")  # a transaction of its own: shed even if the retry fails
            finally:
                db.execute(f"PRAGMA busy_timeout={max(1, round(self.timeout * 1000))}")

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        with self._lock, self.guard:
            return self.connection().execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock, self.guard:
            return self.connection().execute(sql, args).fetchall()

    def close(self) -> None:
        if self._hot is not None:
            self._hot.close()
            self._hot = None
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def ping(self) -> None:
        """A write, rolled back: a file that is read-only or locked elsewhere fails here too."""
        with self._lock, self.guard:
            db = self.connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            finally:
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")

    # tasks

    def put_task_once(self, record: TaskRecord, key: str | None, limit: Limit = None) -> str | Overdraft:
        with self.write() as db:
            return steps.put_once(db, record, key, limit)

    def put_task(self, record: TaskRecord) -> None:
        with self.write() as db:
            steps.put_task(db, record)

    def get_task(self, task_id: str) -> TaskRecord | None:
        row = self._one("SELECT data FROM tasks WHERE id = ?", (task_id,))
        return TaskRecord.from_json(row[0]) if row else None

    def update_task(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None:
        with self.write() as db:
            return steps.update_task(db, task_id, change)

    def tasks(self, account: str | None = None) -> list[TaskRecord]:
        if account is None:
            rows = self._all("SELECT data FROM tasks ORDER BY rowid")
        else:
            rows = self._all("SELECT data FROM tasks WHERE account = ? ORDER BY rowid", (account,))
        return [TaskRecord.from_json(r[0]) for r in rows]

    def task_count(self, account: str | None = None) -> int:
        if account is None:
            row = self._one("SELECT COALESCE(SUM(n), 0) FROM task_counts")
        else:
            row = self._one("SELECT n FROM task_counts WHERE account = ?", (account,))
        return int(row[0]) if row else 0

    def task_page(
        self, account: str | None = None, *, newest_first: bool = False, offset: int = 0, limit: int | None = None
    ) -> list[TaskRecord]:
        order = "DESC" if newest_first else "ASC"
        window = (-1 if limit is None else limit, offset)
        if account is None:
            rows = self._all(f"SELECT data FROM tasks ORDER BY rowid {order} LIMIT ? OFFSET ?", window)  # noqa: S608
        else:
            sql = f"SELECT data FROM tasks WHERE account = ? ORDER BY rowid {order} LIMIT ? OFFSET ?"  # noqa: S608
            rows = self._all(sql, (account, *window))
        return [TaskRecord.from_json(r[0]) for r in rows]

    def evict_tasks(self, created_before: float, limit: int | None = None) -> int:
        with self.write() as db:
            return steps.evict_tasks(db, created_before, limit)

    # idempotency

    def idempotent_task(self, account: str, key: str) -> str | None:
        row = self._one("SELECT task_id FROM idempotency WHERE account = ? AND key = ?", (account, key))
        return str(row[0]) if row else None

    # uploads

    def put_upload(
        self,
        upload: UploadRecord,
        *,
        account_quota: int | None = None,
        total_quota: int | None = None,
        evict_by: float | None = None,
    ) -> UploadRefused | None:
        with self.write() as db:
            if evict_by is not None:  # the oldest first, by the index; the triggers take their bytes out
                db.execute("DELETE FROM uploads WHERE created_at <= ?", (evict_by,))
            if account_quota is not None or total_quota is not None:
                refused = upload_refusal(
                    steps.upload_usage(db, upload.account), upload.size, account_quota, total_quota
                )
                if refused is not None:
                    return refused
            steps.upsert_upload(db, upload)
        return None

    def upload_usage(self, account: str) -> UploadUsage:
        """The bytes of uploads held by ``account`` and by everyone (the running totals)."""
        with self._lock, self.guard:
            return steps.upload_usage(self.connection(), account)

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        row = self._one("SELECT meta, data FROM uploads WHERE id = ?", (upload_id,))
        return UploadRecord(**json.loads(row[0]), data=bytes(row[1])) if row else None

    def upload_records(self) -> list[UploadRecord]:
        rows = self._all("SELECT meta FROM uploads ORDER BY rowid")
        return [UploadRecord(**json.loads(r[0]), data=b"") for r in rows]

    def delete_upload(self, upload_id: str) -> bool:
        with self.write() as db:
            return db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,)).rowcount > 0

    # journal

    def append_journal(self, entry: dict[str, Any]) -> int:
        """Keep ``entry``; 0 when it is not kept, the disk having been full since the last write."""
        if self._hot is not None:
            self._hot.flush_journal()  # the entries queued before this one come first
        if self.journal_off:
            return 0
        try:
            with self.write() as db:
                return self.append_rows(db, [(entry.get("account"), json.dumps(entry))])
        except StoreUnavailable as exc:
            if out_of_space(exc):
                self.make_room()
            raise

    def append_rows(self, db: sqlite3.Connection, entries: list[tuple[Any, str]]) -> int:
        """Journal entries (account, JSON text) inside a write transaction; the last one's sequence number
        (0: none written, the disk having been full since the last write)."""
        if self.journal_off:
            return 0
        db.executemany("INSERT INTO journal (account, data) VALUES (?, ?)", entries)
        seq = int(db.execute("SELECT last_insert_rowid()").fetchone()[0])
        before = self._appends
        self._appends += len(entries)
        if self._appends // 100 != before // 100 or self.journal_size < 100:
            db.execute("DELETE FROM journal WHERE seq <= ?", (seq - self.journal_size,))
        return seq

    def hot(self) -> HotStore:
        """The hot path's calls (``store.aio``): reads at once on a connection of their own, writes in a
        writer thread, many in one transaction; journal entries queued and written in batches."""
        if self._hot is None:
            self._hot = SQLiteHot(self)
        return self._hot

    def journal(self, since: int = 0) -> list[dict[str, Any]]:
        if self._hot is not None:
            self._hot.flush_journal()  # entries queued for the writer: written before they are read
        rows = self._all(
            "SELECT seq, data FROM journal WHERE seq > ? AND seq > (SELECT COALESCE(MAX(seq), 0) FROM journal) - ?"
            " ORDER BY seq",
            (since, self.journal_size),
        )
        return [{**json.loads(data), "seq": seq} for seq, data in rows]

    # faults

    def put_fault_rule(self, rule: FaultRule) -> None:
        with self.write() as db:
            steps.put_fault_rule(db, rule)

    def fault_rules(self) -> list[FaultRule]:
        return [FaultRule.from_dict(json.loads(r[0])) for r in self._all("SELECT data FROM rules ORDER BY pos")]

    def delete_fault_rule(self, rule_id: str) -> bool:
        with self.write() as db:
            return db.execute("DELETE FROM rules WHERE id = ?", (rule_id,)).rowcount > 0

    def fire_fault_rule(self, rule_id: str) -> bool:
        with self.write() as db:
            return steps.fire(db, "rules", rule_id)

    def fault_rule_counts(self) -> dict[str, int]:
        return {rule_id: int(fired) for rule_id, fired in self._all("SELECT id, fired FROM rules")}

    # canned responses

    def put_canned_response(self, response: CannedResponse) -> None:
        with self.write() as db:
            steps.put_canned_response(db, response)

    def canned_responses(self) -> list[CannedResponse]:
        rows = self._all("SELECT data, fired FROM canned ORDER BY pos")
        return [CannedResponse.from_dict({**json.loads(data), "fired": fired}) for data, fired in rows]

    def delete_canned_response(self, response_id: str) -> bool:
        with self.write() as db:
            return db.execute("DELETE FROM canned WHERE id = ?", (response_id,)).rowcount > 0

    def fire_canned_response(self, response_id: str) -> bool:
        with self.write() as db:
            return steps.fire(db, "canned", response_id)

    # per-account settings

    def account_settings(self, account: str) -> dict[str, Any]:
        row = self._one("SELECT data FROM account_settings WHERE account = ?", (account,))
        found: dict[str, Any] = json.loads(row[0]) if row else {}
        return found

    def set_account_settings(self, account: str, settings: dict[str, Any]) -> None:
        with self.write() as db:
            steps.set_account_settings(db, account, settings)

    def all_account_settings(self) -> dict[str, dict[str, Any]]:
        return {account: json.loads(data) for account, data in self._all("SELECT account, data FROM account_settings")}

    # rate limiting

    def hit(self, account: str, window: int) -> int:
        with self.write() as db:
            return steps.hit(db, account, window)

    # balances

    def set_balance(self, account: str, amount: float | None) -> None:
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO balances VALUES (?, ?)", (account, amount))

    def balances(self) -> dict[str, float | None]:
        return {account: amount for account, amount in self._all("SELECT account, amount FROM balances")}

    def spending(self, account: str, now: float) -> Spending:
        row = self._one(  # one statement: one snapshot, whatever other workers move meanwhile
            "SELECT (SELECT charged FROM spend WHERE account = ?), (SELECT refunded FROM spend WHERE account = ?), "
            "(SELECT SUM(amount) FROM refunds WHERE account = ? AND due <= ?)",
            (account, account, account, now),
        )
        return Spending(float(row[0] or 0.0), float(row[1] or 0.0) + float(row[2] or 0.0))

    # the clock shared by every worker

    def clock_state(self) -> tuple[float, float | None]:
        try:
            row = self._one("SELECT offset, frozen_at FROM clock WHERE id = 1")
        except StoreUnavailable:
            return self._last_clock
        self._last_clock = (float(row[0]), row[1]) if row else (0.0, None)
        return self._last_clock

    def set_clock_state(self, offset: float, frozen_at: float | None) -> None:
        with self.write() as db:
            db.execute("INSERT OR REPLACE INTO clock VALUES (1, ?, ?)", (offset, frozen_at))

    def reset(self, account: str | None = None) -> None:
        with self.write() as db:
            if account is None:
                steps.wipe(db)
                return
            for table in steps.ACCOUNT_TABLES:
                db.execute(f"DELETE FROM {table} WHERE account = ?", (account,))  # noqa: S608 - fixed table names


def _roomy(method: Callable[..., Any]) -> Callable[..., Any]:
    """A write that failed for want of space is tried once more, after ``make_room``."""

    @functools.wraps(method)
    def call(self: SQLiteStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except StoreUnavailable as exc:
            if not out_of_space(exc):
                raise
            self.make_room()
        return method(self, *args, **kwargs)

    return call


# The writes (the journal's own aside: it is shed, not retried). The tasks come before the journal.
WRITES = (
    "put_task_once", "put_task", "update_task", "evict_tasks", "put_upload", "delete_upload", "put_fault_rule",
    "delete_fault_rule", "fire_fault_rule", "put_canned_response", "delete_canned_response", "fire_canned_response",
    "set_account_settings", "hit", "set_balance", "set_clock_state", "reset", "replace_state",
)  # fmt: skip
for _name in WRITES:
    setattr(SQLiteStore, _name, _roomy(getattr(SQLiteStore, _name)))
