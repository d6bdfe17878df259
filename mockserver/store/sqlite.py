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
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from ..core.errors import StoreUnavailable
from ..core.faults import FaultRule
from ..core.ledger import refund_due
from ..core.records import TaskRecord, UploadRecord
from .base import EPSILON, Overdraft, Spending, booking
from .guard import Guard

SCHEMA_VERSION = 2  # 2: running totals (spend, refunds), keys found by task

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, account TEXT NOT NULL, created_at REAL NOT NULL,
                                  data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_account ON tasks(account);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created_at);
CREATE TABLE IF NOT EXISTS idempotency (account TEXT, key TEXT, task_id TEXT, PRIMARY KEY (account, key));
CREATE TABLE IF NOT EXISTS uploads (id TEXT PRIMARY KEY, account TEXT, meta TEXT NOT NULL, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, account TEXT, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rules (id TEXT PRIMARY KEY, pos INTEGER, data TEXT NOT NULL,
                                  fired INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS windows (account TEXT PRIMARY KEY, window INTEGER NOT NULL, count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS balances (account TEXT PRIMARY KEY, amount REAL);
CREATE TABLE IF NOT EXISTS clock (id INTEGER PRIMARY KEY CHECK (id = 1), offset REAL NOT NULL, frozen_at REAL);
CREATE INDEX IF NOT EXISTS idempotency_task ON idempotency(task_id);
CREATE TABLE IF NOT EXISTS spend (account TEXT PRIMARY KEY, charged REAL NOT NULL DEFAULT 0,
                                  refunded REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS refunds (task_id TEXT PRIMARY KEY, account TEXT NOT NULL, due REAL NOT NULL,
                                    amount REAL NOT NULL);
CREATE INDEX IF NOT EXISTS refunds_due ON refunds(account, due);
"""


LEDGER = ("spend", "refunds")


class SQLiteStore:
    def __init__(self, path: str | Path, journal_size: int = 10_000, timeout: float = 2.0) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.journal_size = journal_size
        self.timeout = timeout
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._guard = Guard("sqlite", (sqlite3.OperationalError,), on_error=self._forget_connection)
        self._last_clock: tuple[float, float | None] = (0.0, None)
        self._appends = 0
        with suppress(StoreUnavailable), self._lock, self._guard:
            self._connection()  # now if it can; else on the first call that finds the file usable

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
            try:
                db.execute(f"PRAGMA busy_timeout={max(1, round(self.timeout * 1000))}")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    self._migrate(db)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _migrate(self, db: sqlite3.Connection) -> None:
        """Create the tables; a file from before the running totals gets them summed from its tasks."""
        db.execute("BEGIN IMMEDIATE")
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]  # another worker may have been first
            if version < SCHEMA_VERSION:
                for statement in filter(str.strip, SCHEMA.split(";")):
                    db.execute(statement)
                for (data,) in db.execute("SELECT data FROM tasks ORDER BY rowid").fetchall():
                    self._book(db, TaskRecord.from_dict(json.loads(data)))
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            with suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def _forget_connection(self, error: BaseException) -> None:
        """After a failure other than a lock held elsewhere, open the file afresh on the next call."""
        name = str(getattr(error, "sqlite_errorname", ""))
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or self._db is None:
            return
        with suppress(sqlite3.Error):
            self._db.close()
        self._db = None

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction: other writers wait (up to the timeout), nobody sees half of it."""
        with self._lock, self._guard:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    with suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        with self._lock, self._guard:
            return self._connection().execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock, self._guard:
            return self._connection().execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def ping(self) -> None:
        """A write, rolled back: a file that is read-only or locked elsewhere fails here too."""
        with self._lock, self._guard:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            finally:
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")

    # tasks

    def put_task_once(self, record: TaskRecord, key: str | None, limit: float | None = None) -> str | Overdraft:
        with self._write() as db:
            if key is not None:
                row = db.execute(
                    "SELECT task_id FROM idempotency WHERE account = ? AND key = ?", (record.account, key)
                ).fetchone()
                if row is not None:
                    return str(row[0])
            if db.execute("SELECT 1 FROM tasks WHERE id = ?", (record.id,)).fetchone() is not None:
                return record.id
            if record.charge:
                spent = self._settle(db, record.account, record.created_at)
                if limit is not None and record.charge > limit - spent + EPSILON:
                    return Overdraft(limit - spent)
            self._insert(db, record)
            self._book(db, record)
            if key is not None:
                db.execute("INSERT INTO idempotency VALUES (?, ?, ?)", (record.account, key, record.id))
            return record.id

    def put_task(self, record: TaskRecord) -> None:
        with self._write() as db:
            row = db.execute("SELECT data FROM tasks WHERE id = ?", (record.id,)).fetchone()
            self._insert(db, record)
            self._rebook(db, TaskRecord.from_dict(json.loads(row[0])) if row else None, record)

    @staticmethod
    def _insert(db: sqlite3.Connection, record: TaskRecord) -> None:
        db.execute(
            "INSERT INTO tasks (id, account, created_at, data) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET account = excluded.account, data = excluded.data",
            (record.id, record.account, record.created_at, json.dumps(record.to_dict())),
        )

    # running totals (inside a write transaction)

    @staticmethod
    def _book(db: sqlite3.Connection, record: TaskRecord) -> None:
        if not record.charge:
            return
        db.execute(
            "INSERT INTO spend (account, charged) VALUES (?, ?) "
            "ON CONFLICT(account) DO UPDATE SET charged = charged + excluded.charged",
            (record.account, record.charge),
        )
        due = refund_due(record)
        if due is not None:
            db.execute(
                "INSERT OR REPLACE INTO refunds VALUES (?, ?, ?, ?)", (record.id, record.account, due, record.charge)
            )

    @staticmethod
    def _unbook(db: sqlite3.Connection, record: TaskRecord) -> None:
        if not record.charge:
            return
        db.execute("UPDATE spend SET charged = charged - ? WHERE account = ?", (record.charge, record.account))
        queued = db.execute("DELETE FROM refunds WHERE task_id = ?", (record.id,)).rowcount
        if not queued and refund_due(record) is not None:  # its refund was moved already
            db.execute("UPDATE spend SET refunded = refunded - ? WHERE account = ?", (record.charge, record.account))

    def _rebook(self, db: sqlite3.Connection, old: TaskRecord | None, new: TaskRecord | None) -> None:
        if old is not None and new is not None and booking(old) == booking(new):
            return
        if old is not None:
            self._unbook(db, old)
        if new is not None:
            self._book(db, new)

    @staticmethod
    def _settle(db: sqlite3.Connection, account: str, now: float) -> float:
        """Move the account's refunds due by ``now`` out of the queue; what it has spent."""
        moved = db.execute("DELETE FROM refunds WHERE account = ? AND due <= ? RETURNING amount", (account, now))
        total = sum(amount for (amount,) in moved.fetchall())
        if total:
            db.execute("UPDATE spend SET refunded = refunded + ? WHERE account = ?", (total, account))
        row = db.execute("SELECT charged - refunded FROM spend WHERE account = ?", (account,)).fetchone()
        return float(row[0]) if row else 0.0

    def get_task(self, task_id: str) -> TaskRecord | None:
        row = self._one("SELECT data FROM tasks WHERE id = ?", (task_id,))
        return TaskRecord.from_dict(json.loads(row[0])) if row else None

    def update_task(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None:
        with self._write() as db:
            row = db.execute("SELECT data FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                return None
            record = TaskRecord.from_dict(json.loads(row[0]))
            updated = change(record)
            if updated is not record:
                db.execute("UPDATE tasks SET data = ? WHERE id = ?", (json.dumps(updated.to_dict()), task_id))
                self._rebook(db, record, updated)
            return updated

    def tasks(self, account: str | None = None) -> list[TaskRecord]:
        if account is None:
            rows = self._all("SELECT data FROM tasks ORDER BY rowid")
        else:
            rows = self._all("SELECT data FROM tasks WHERE account = ? ORDER BY rowid", (account,))
        return [TaskRecord.from_dict(json.loads(r[0])) for r in rows]

    def evict_tasks(self, created_before: float) -> int:
        with self._write() as db:
            for (data,) in db.execute("SELECT data FROM tasks WHERE created_at < ?", (created_before,)).fetchall():
                self._unbook(db, TaskRecord.from_dict(json.loads(data)))
            db.execute(
                "DELETE FROM idempotency WHERE task_id IN (SELECT id FROM tasks WHERE created_at < ?)",
                (created_before,),
            )
            return int(db.execute("DELETE FROM tasks WHERE created_at < ?", (created_before,)).rowcount)

    # idempotency

    def idempotent_task(self, account: str, key: str) -> str | None:
        row = self._one("SELECT task_id FROM idempotency WHERE account = ? AND key = ?", (account, key))
        return str(row[0]) if row else None

    # uploads

    def put_upload(self, upload: UploadRecord) -> None:
        meta = {k: getattr(upload, k) for k in ("id", "account", "filename", "content_type", "size", "created_at")}
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO uploads VALUES (?, ?, ?, ?)",
                (upload.id, upload.account, json.dumps(meta), upload.data),
            )

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        row = self._one("SELECT meta, data FROM uploads WHERE id = ?", (upload_id,))
        return UploadRecord(**json.loads(row[0]), data=bytes(row[1])) if row else None

    def upload_records(self) -> list[UploadRecord]:
        rows = self._all("SELECT meta FROM uploads ORDER BY rowid")
        return [UploadRecord(**json.loads(r[0]), data=b"") for r in rows]

    def delete_upload(self, upload_id: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,)).rowcount > 0

    # journal

    def append_journal(self, entry: dict[str, Any]) -> int:
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO journal (account, data) VALUES (?, ?)", (entry.get("account"), json.dumps(entry))
            )
            seq = int(cursor.lastrowid or 0)
            self._appends += 1
            if self._appends % 100 == 0 or self.journal_size < 100:
                db.execute("DELETE FROM journal WHERE seq <= ?", (seq - self.journal_size,))
            return seq

    def journal(self, since: int = 0) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT seq, data FROM journal WHERE seq > ? AND seq > (SELECT COALESCE(MAX(seq), 0) FROM journal) - ?"
            " ORDER BY seq",
            (since, self.journal_size),
        )
        return [{**json.loads(data), "seq": seq} for seq, data in rows]

    # faults

    def put_fault_rule(self, rule: FaultRule) -> None:
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO rules (id, pos, data, fired) "
                "VALUES (?, (SELECT COALESCE(MAX(pos), 0) + 1 FROM rules), ?, 0)",
                (rule.id, json.dumps(rule.to_dict())),
            )

    def fault_rules(self) -> list[FaultRule]:
        return [FaultRule.from_dict(json.loads(r[0])) for r in self._all("SELECT data FROM rules ORDER BY pos")]

    def delete_fault_rule(self, rule_id: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM rules WHERE id = ?", (rule_id,)).rowcount > 0

    def fire_fault_rule(self, rule_id: str) -> bool:
        with self._write() as db:
            row = db.execute("SELECT data, fired FROM rules WHERE id = ?", (rule_id,)).fetchone()
            if row is None:
                return False
            times = json.loads(row[0]).get("times")
            if times is not None and row[1] >= times:
                return False
            db.execute("UPDATE rules SET fired = fired + 1 WHERE id = ?", (rule_id,))
            return True

    # rate limiting

    def hit(self, account: str, window: int) -> int:
        with self._write() as db:
            row = db.execute(
                "INSERT INTO windows VALUES (?, ?, 1) ON CONFLICT(account) DO UPDATE SET "
                "count = CASE WHEN window = excluded.window THEN count + 1 ELSE 1 END, window = excluded.window "
                "RETURNING count",
                (account, window),
            ).fetchone()
            return int(row[0])

    # balances

    def set_balance(self, account: str, amount: float | None) -> None:
        with self._write() as db:
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
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO clock VALUES (1, ?, ?)", (offset, frozen_at))

    def reset(self, account: str | None = None) -> None:
        with self._write() as db:
            if account is None:
                for table in ("tasks", "idempotency", "uploads", "journal", "rules", "windows", "balances", *LEDGER):
                    db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
                return
            for table in ("tasks", "idempotency", "uploads", "journal", "windows", "balances", *LEDGER):
                db.execute(f"DELETE FROM {table} WHERE account = ?", (account,))  # noqa: S608 - fixed table names
