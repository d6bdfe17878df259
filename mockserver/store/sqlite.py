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
before the journal. A write that fails for want of space makes room (``_make_room``): the WAL
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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.canned import CannedResponse
from ..core.errors import StoreUnavailable
from ..core.faults import FaultRule
from ..core.ledger import refund_due
from ..core.records import TaskRecord, UploadRecord
from .base import (
    EPSILON,
    AccountLimit,
    Limit,
    Overdraft,
    Spending,
    StateImage,
    UploadRefused,
    UploadUsage,
    booking,
    upload_refusal,
)
from .guard import Guard

if TYPE_CHECKING:
    from .aio import HotStore
    from .sqlite_hot import SQLiteHot

SCHEMA_VERSION = 5  # 2: running totals (spend, refunds), keys found by task; 3: canned responses, account settings;
# 4: the shared settings' version (bumped by triggers); 5: uploads' size and time as columns, their bytes' totals

SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, account TEXT NOT NULL, created_at REAL NOT NULL,
                                  data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_account ON tasks(account);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created_at);
CREATE TABLE IF NOT EXISTS idempotency (account TEXT, key TEXT, task_id TEXT, PRIMARY KEY (account, key));
CREATE TABLE IF NOT EXISTS uploads (id TEXT PRIMARY KEY, account TEXT, meta TEXT NOT NULL, data BLOB NOT NULL,
                                    size INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL DEFAULT 0);
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
CREATE TABLE IF NOT EXISTS canned (id TEXT PRIMARY KEY, pos INTEGER, data TEXT NOT NULL,
                                   fired INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS account_settings (account TEXT PRIMARY KEY, data TEXT NOT NULL);
"""


def _bumps(table: str, event: str, columns: str) -> str:
    """A trigger: any ``event`` on ``table`` bumps the shared settings' version."""
    of = columns if event == "UPDATE" else ""
    return (
        f"CREATE TRIGGER IF NOT EXISTS {table}_{event.lower()} AFTER {event}{of} ON {table} "  # noqa: S608 - fixed names
        "BEGIN UPDATE shared_version SET version = version + 1 WHERE id = 1; END"
    )


# The version of what every request reads of the shared settings (the clock, fault rules, canned
# responses, accounts' settings): any change by any connection bumps it (the firing counts excepted),
# so a worker reads the version once per request and the settings again only when it moved.
SHARED_TABLES = {"clock": "", "rules": " OF data, pos", "canned": " OF data, pos", "account_settings": ""}
SHARED_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS shared_version (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO shared_version VALUES (1, 0)",
    *(_bumps(table, event, of) for table, of in SHARED_TABLES.items() for event in ("INSERT", "UPDATE", "DELETE")),
    # Each account's number of tasks, kept by triggers (a page of the listing says the total without counting).
    "CREATE TABLE IF NOT EXISTS task_counts (account TEXT PRIMARY KEY, n INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO task_counts SELECT account, COUNT(*) FROM tasks GROUP BY account",
    "CREATE TRIGGER IF NOT EXISTS tasks_counted AFTER INSERT ON tasks BEGIN "
    "INSERT INTO task_counts VALUES (new.account, 1) ON CONFLICT(account) DO UPDATE SET n = n + 1; END",
    "CREATE TRIGGER IF NOT EXISTS tasks_uncounted AFTER DELETE ON tasks BEGIN "
    "UPDATE task_counts SET n = n - 1 WHERE account = old.account; END",
    "CREATE TRIGGER IF NOT EXISTS tasks_recounted AFTER UPDATE OF account ON tasks WHEN old.account <> new.account "
    "BEGIN UPDATE task_counts SET n = n - 1 WHERE account = old.account; "
    "INSERT INTO task_counts VALUES (new.account, 1) ON CONFLICT(account) DO UPDATE SET n = n + 1; END",
]

# The bytes of the uploads held, per account and in all, kept by triggers in the same statement as the
# upload (``base.py``): a quota check reads two rows, not every upload. Uploads are written with an upsert,
# never ``INSERT OR REPLACE`` (whose deletions fire no trigger).
UPLOAD_SCHEMA = [
    "CREATE INDEX IF NOT EXISTS uploads_created ON uploads(created_at)",
    "CREATE TABLE IF NOT EXISTS upload_bytes (account TEXT PRIMARY KEY, n INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS upload_total (id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO upload_bytes SELECT account, SUM(size) FROM uploads GROUP BY account",
    "INSERT OR IGNORE INTO upload_total SELECT 1, COALESCE(SUM(size), 0) FROM uploads",
    "CREATE TRIGGER IF NOT EXISTS uploads_counted AFTER INSERT ON uploads BEGIN "
    "INSERT INTO upload_bytes VALUES (new.account, new.size) ON CONFLICT(account) DO UPDATE SET n = n + new.size; "
    "UPDATE upload_total SET n = n + new.size WHERE id = 1; END",
    "CREATE TRIGGER IF NOT EXISTS uploads_uncounted AFTER DELETE ON uploads BEGIN "
    "UPDATE upload_bytes SET n = n - old.size WHERE account = old.account; "
    "DELETE FROM upload_bytes WHERE account = old.account AND n = 0; "
    "UPDATE upload_total SET n = n - old.size WHERE id = 1; END",
    "CREATE TRIGGER IF NOT EXISTS uploads_recounted AFTER UPDATE OF account, size ON uploads BEGIN "
    "UPDATE upload_bytes SET n = n - old.size WHERE account = old.account; "
    "DELETE FROM upload_bytes WHERE account = old.account AND n = 0; "
    "INSERT INTO upload_bytes VALUES (new.account, new.size) ON CONFLICT(account) DO UPDATE SET n = n + new.size; "
    "UPDATE upload_total SET n = n - old.size + new.size WHERE id = 1; END",
]

LEDGER = ("spend", "refunds")
# The errors of a write that found no room: SQLite's own, and the I/O errors of a file (or the WAL's
# index) that could not grow. ``_make_room`` answers them.
OUT_OF_SPACE = ("SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_SHMSIZE")
ROOM_WAIT_MS = 50  # longest making room waits for other connections (it may run on the event loop)


def out_of_space(error: BaseException | None) -> bool:
    """Whether ``error`` (a driver's error, or the ``StoreUnavailable`` made of one) is a write that
    found no room on the disk."""
    cause = error.__cause__ if isinstance(error, StoreUnavailable) else error
    if not isinstance(cause, sqlite3.Error):
        return False
    return getattr(cause, "sqlite_errorname", "") in OUT_OF_SPACE or "disk is full" in str(cause)


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
        self._journal_off = False  # a write found no room: no entry is written until a write succeeds
        self._hot: SQLiteHot | None = None
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
                for statement in SHARED_SCHEMA:
                    db.execute(statement)
                columns = {row[1] for row in db.execute("PRAGMA table_info(uploads)")}
                if "size" not in columns:  # a file from before version 5: the columns, filled from the metadata
                    db.execute("ALTER TABLE uploads ADD COLUMN size INTEGER NOT NULL DEFAULT 0")
                    db.execute("ALTER TABLE uploads ADD COLUMN created_at REAL NOT NULL DEFAULT 0")
                    for upload_id, meta in db.execute("SELECT id, meta FROM uploads").fetchall():
                        fields = json.loads(meta)
                        db.execute(
                            "UPDATE uploads SET size = ?, created_at = ? WHERE id = ?",
                            (int(fields["size"]), float(fields["created_at"]), upload_id),
                        )
                for statement in UPLOAD_SCHEMA:  # after the columns: the totals are summed from them once
                    db.execute(statement)
                if version < 2:  # the running totals came with version 2: sum them from the tasks once
                    for (data,) in db.execute("SELECT data FROM tasks ORDER BY rowid").fetchall():
                        self._book(db, TaskRecord.from_json(data))
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

    @staticmethod
    def _wipe(db: sqlite3.Connection) -> None:
        """Everything but the clock (and the journal's sequence numbers), inside a write transaction."""
        for table in ("tasks", "idempotency", "uploads", "journal", "rules", "windows", "balances", *LEDGER,
                      "canned", "account_settings"):  # fmt: skip
            db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
        db.execute("DELETE FROM upload_bytes")  # emptied by the uploads' triggers already: made sure
        db.execute("UPDATE upload_total SET n = 0")

    def replace_state(self, image: StateImage) -> None:
        """The wipe and every item in one transaction on the store's own connection (the hot store's
        writer finds the lock taken and tries again, as for any other writer): a failure rolls all of it
        back, and readers (under WAL) see the last commit, the old state or the new."""
        if self._hot is not None:
            self._hot.flush_journal()  # entries queued before the replace are emptied with the rest
        with self._write() as db:
            self._wipe(db)
            for record in image.tasks:
                self._put_task_in(db, record)
            for upload in image.uploads:
                self._upsert_upload(db, upload)
            db.executemany("INSERT OR REPLACE INTO balances VALUES (?, ?)", image.balances.items())
            for account, values in image.account_settings.items():
                self._set_settings_in(db, account, values)
            for rule in image.fault_rules:
                self._put_rule_in(db, rule)
            for response in image.canned_responses:
                self._put_canned_in(db, response)
        if self._hot is not None:
            self._hot.end_read()  # this turn's reads on the hot connection see the new state too

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction: other writers wait (up to the timeout), nobody sees half of it."""
        with self._lock, self._guard:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                db.execute("COMMIT")
                self._journal_off = False  # a write succeeded: there is room again
            except BaseException:
                if db.in_transaction:
                    with suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                raise

    def _make_room(self) -> None:
        """A write found no room: checkpoint the WAL and truncate it (its space goes back to the disk),
        delete the journal's rows (their pages go to the file's free list, for the tasks), and write no
        journal entry until a write succeeds again. Best effort, each step waiting ``ROOM_WAIT_MS`` at
        most for other connections (readers, another worker's writer)."""
        self._journal_off = True
        if self._hot is not None:
            self._hot.end_read()  # this process's reader leaves the WAL first
        with self._lock, suppress(sqlite3.Error):
            db = self._connection()
            db.execute(f"PRAGMA busy_timeout={ROOM_WAIT_MS}")
            try:
                with suppress(sqlite3.Error):
                    db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                db.execute("DELETE FROM journal")  # a transaction of its own: shed even if the retry fails
            finally:
                db.execute(f"PRAGMA busy_timeout={max(1, round(self.timeout * 1000))}")

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        with self._lock, self._guard:
            return self._connection().execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock, self._guard:
            return self._connection().execute(sql, args).fetchall()

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
        with self._lock, self._guard:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            finally:
                with suppress(sqlite3.Error):
                    db.execute("ROLLBACK")

    # tasks

    def put_task_once(self, record: TaskRecord, key: str | None, limit: Limit = None) -> str | Overdraft:
        with self._write() as db:
            return self._put_once(db, record, key, limit)

    def _put_once(self, db: sqlite3.Connection, record: TaskRecord, key: str | None, limit: Limit) -> str | Overdraft:
        """``put_task_once`` inside a write transaction (the hot store's writer runs many in one)."""
        if key is not None:
            row = db.execute(
                "SELECT task_id FROM idempotency WHERE account = ? AND key = ?", (record.account, key)
            ).fetchone()
            if row is not None:
                return str(row[0])
        if db.execute("SELECT 1 FROM tasks WHERE id = ?", (record.id,)).fetchone() is not None:
            return record.id
        if record.charge:
            if isinstance(limit, AccountLimit):
                row = db.execute("SELECT amount FROM balances WHERE account = ?", (record.account,)).fetchone()
                limit = row[0] if row is not None else limit.default
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
            self._put_task_in(db, record)

    def _put_task_in(self, db: sqlite3.Connection, record: TaskRecord) -> None:
        """``put_task`` inside a write transaction (a replace of the whole state runs many in one)."""
        row = db.execute("SELECT data FROM tasks WHERE id = ?", (record.id,)).fetchone()
        self._insert(db, record)
        self._rebook(db, TaskRecord.from_json(row[0]) if row else None, record)

    @staticmethod
    def _insert(db: sqlite3.Connection, record: TaskRecord) -> None:
        db.execute(
            "INSERT INTO tasks (id, account, created_at, data) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET account = excluded.account, data = excluded.data",
            (record.id, record.account, record.created_at, record.to_json()),
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
        return TaskRecord.from_json(row[0]) if row else None

    def update_task(self, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None:
        with self._write() as db:
            return self._update_task_in(db, task_id, change)

    def _update_task_in(
        self, db: sqlite3.Connection, task_id: str, change: Callable[[TaskRecord], TaskRecord]
    ) -> TaskRecord | None:
        """``update_task`` inside a write transaction (the hot store runs it with others)."""
        row = db.execute("SELECT data FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            return None
        record = TaskRecord.from_json(row[0])
        updated = change(record)
        if updated is not record:
            db.execute("UPDATE tasks SET data = ? WHERE id = ?", (updated.to_json(), task_id))
            self._rebook(db, record, updated)
        return updated

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
        with self._write() as db:
            return self._evict_tasks_in(db, created_before, limit)

    def _evict_tasks_in(self, db: sqlite3.Connection, created_before: float, limit: int | None = None) -> int:
        """``evict_tasks`` inside a write transaction (the hot store runs it with others)."""
        rows = db.execute(
            "SELECT id, data FROM tasks WHERE created_at < ? ORDER BY created_at LIMIT ?",
            (created_before, -1 if limit is None else limit),
        ).fetchall()
        for task_id, data in rows:
            self._unbook(db, TaskRecord.from_json(data))
            db.execute("DELETE FROM idempotency WHERE task_id = ?", (task_id,))
            db.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
        return len(rows)

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
        with self._write() as db:
            if evict_by is not None:  # the oldest first, by the index; the triggers take their bytes out
                db.execute("DELETE FROM uploads WHERE created_at <= ?", (evict_by,))
            if account_quota is not None or total_quota is not None:
                refused = upload_refusal(
                    self._upload_usage(db, upload.account), upload.size, account_quota, total_quota
                )
                if refused is not None:
                    return refused
            self._upsert_upload(db, upload)
        return None

    @staticmethod
    def _upsert_upload(db: sqlite3.Connection, upload: UploadRecord) -> None:
        """Store or replace an upload (inside a write transaction). An upsert, not ``INSERT OR REPLACE``:
        the totals' triggers see a replaced upload as an update."""
        meta = {k: getattr(upload, k) for k in ("id", "account", "filename", "content_type", "size", "created_at")}
        db.execute(
            "INSERT INTO uploads (id, account, meta, data, size, created_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET account = excluded.account, meta = excluded.meta, data = excluded.data, "
            "size = excluded.size, created_at = excluded.created_at",
            (upload.id, upload.account, json.dumps(meta), upload.data, upload.size, upload.created_at),
        )

    @staticmethod
    def _upload_usage(db: sqlite3.Connection, account: str) -> UploadUsage:
        row = db.execute(  # one statement: one snapshot
            "SELECT (SELECT n FROM upload_bytes WHERE account = ?), (SELECT n FROM upload_total WHERE id = 1)",
            (account,),
        ).fetchone()
        return UploadUsage(int(row[0] or 0), int(row[1] or 0))

    def upload_usage(self, account: str) -> UploadUsage:
        """The bytes of uploads held by ``account`` and by everyone (the running totals)."""
        with self._lock, self._guard:
            return self._upload_usage(self._connection(), account)

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
        """Keep ``entry``; 0 when it is not kept, the disk having been full since the last write."""
        if self._hot is not None:
            self._hot.flush_journal()  # the entries queued before this one come first
        if self._journal_off:
            return 0
        try:
            with self._write() as db:
                return self._append(db, [(entry.get("account"), json.dumps(entry))])
        except StoreUnavailable as exc:
            if out_of_space(exc):
                self._make_room()
            raise

    def _append(self, db: sqlite3.Connection, entries: list[tuple[Any, str]]) -> int:
        """Journal entries (account, JSON text) inside a write transaction; the last one's sequence number
        (0: none written, the disk having been full since the last write)."""
        if self._journal_off:
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
            from .sqlite_hot import SQLiteHot

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
        with self._write() as db:
            self._put_rule_in(db, rule)

    @staticmethod
    def _put_rule_in(db: sqlite3.Connection, rule: FaultRule) -> None:
        db.execute(
            "INSERT OR REPLACE INTO rules (id, pos, data, fired) "
            "VALUES (?, (SELECT COALESCE(MAX(pos), 0) + 1 FROM rules), ?, ?)",
            (rule.id, json.dumps(rule.to_dict()), rule.fired),
        )

    def fault_rules(self) -> list[FaultRule]:
        return [FaultRule.from_dict(json.loads(r[0])) for r in self._all("SELECT data FROM rules ORDER BY pos")]

    def delete_fault_rule(self, rule_id: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM rules WHERE id = ?", (rule_id,)).rowcount > 0

    def fire_fault_rule(self, rule_id: str) -> bool:
        with self._write() as db:
            return self._fire_fault_rule_in(db, rule_id)

    def _fire_fault_rule_in(self, db: sqlite3.Connection, rule_id: str) -> bool:
        """``fire_fault_rule`` inside a write transaction (the hot store runs it with others)."""
        row = db.execute("SELECT data, fired FROM rules WHERE id = ?", (rule_id,)).fetchone()
        if row is None:
            return False
        times = json.loads(row[0]).get("times")
        if times is not None and row[1] >= times:
            return False
        db.execute("UPDATE rules SET fired = fired + 1 WHERE id = ?", (rule_id,))
        return True

    def fault_rule_counts(self) -> dict[str, int]:
        return {rule_id: int(fired) for rule_id, fired in self._all("SELECT id, fired FROM rules")}

    # canned responses

    def put_canned_response(self, response: CannedResponse) -> None:
        with self._write() as db:
            self._put_canned_in(db, response)

    @staticmethod
    def _put_canned_in(db: sqlite3.Connection, response: CannedResponse) -> None:
        db.execute(
            "INSERT INTO canned (id, pos, data, fired) VALUES (?, (SELECT COALESCE(MAX(pos), 0) + 1 FROM canned), "
            "?, ?) ON CONFLICT(id) DO UPDATE SET data = excluded.data, fired = excluded.fired",
            (response.id, json.dumps(response.to_dict()), response.fired),
        )

    def canned_responses(self) -> list[CannedResponse]:
        rows = self._all("SELECT data, fired FROM canned ORDER BY pos")
        return [CannedResponse.from_dict({**json.loads(data), "fired": fired}) for data, fired in rows]

    def delete_canned_response(self, response_id: str) -> bool:
        with self._write() as db:
            return db.execute("DELETE FROM canned WHERE id = ?", (response_id,)).rowcount > 0

    def fire_canned_response(self, response_id: str) -> bool:
        with self._write() as db:
            return self._fire_canned_response_in(db, response_id)

    def _fire_canned_response_in(self, db: sqlite3.Connection, response_id: str) -> bool:
        """``fire_canned_response`` inside a write transaction (the hot store runs it with others)."""
        row = db.execute("SELECT data, fired FROM canned WHERE id = ?", (response_id,)).fetchone()
        if row is None:
            return False
        times = json.loads(row[0]).get("times")
        if times is not None and row[1] >= times:
            return False
        db.execute("UPDATE canned SET fired = fired + 1 WHERE id = ?", (response_id,))
        return True

    # per-account settings

    def account_settings(self, account: str) -> dict[str, Any]:
        row = self._one("SELECT data FROM account_settings WHERE account = ?", (account,))
        found: dict[str, Any] = json.loads(row[0]) if row else {}
        return found

    def set_account_settings(self, account: str, settings: dict[str, Any]) -> None:
        with self._write() as db:
            self._set_settings_in(db, account, settings)

    @staticmethod
    def _set_settings_in(db: sqlite3.Connection, account: str, settings: Mapping[str, Any]) -> None:
        if settings:
            db.execute("INSERT OR REPLACE INTO account_settings VALUES (?, ?)", (account, json.dumps(dict(settings))))
        else:
            db.execute("DELETE FROM account_settings WHERE account = ?", (account,))

    def all_account_settings(self) -> dict[str, dict[str, Any]]:
        return {account: json.loads(data) for account, data in self._all("SELECT account, data FROM account_settings")}

    # rate limiting

    def hit(self, account: str, window: int) -> int:
        with self._write() as db:
            return self._hit_in(db, account, window)

    def _hit_in(self, db: sqlite3.Connection, account: str, window: int) -> int:
        """``hit`` inside a write transaction (the hot store runs it with others)."""
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
                self._wipe(db)
                return
            for table in ("tasks", "idempotency", "uploads", "journal", "windows", "balances", *LEDGER,
                          "account_settings"):  # fmt: skip
                db.execute(f"DELETE FROM {table} WHERE account = ?", (account,))  # noqa: S608 - fixed table names


def _roomy(method: Callable[..., Any]) -> Callable[..., Any]:
    """A write that failed for want of space is tried once more, after ``_make_room``."""

    @functools.wraps(method)
    def call(self: SQLiteStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except StoreUnavailable as exc:
            if not out_of_space(exc):
                raise
            self._make_room()
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
