"""A store in one SQLite file: survives restarts, shared by worker processes on one host.

WAL journal, one connection per process guarded by a lock, ``BEGIN IMMEDIATE``
for every read-modify-write, so concurrent workers agree. A committed write
survives the process being killed (``synchronous=NORMAL`` under WAL loses
nothing on a process crash, only on a power cut).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..core.faults import FaultRule
from ..core.records import TaskRecord, UploadRecord

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
"""


class SQLiteStore:
    def __init__(self, path: str | Path, journal_size: int = 10_000) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.journal_size = journal_size
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        with self._write() as db:
            for statement in filter(str.strip, SCHEMA.split(";")):
                db.execute(statement)
        self._appends = 0

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction: other writers wait, nobody sees half of it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        with self._lock:
            return self._db.execute(sql, args).fetchone()

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # tasks

    def put_task(self, record: TaskRecord) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO tasks (id, account, created_at, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET account = excluded.account, data = excluded.data",
                (record.id, record.account, record.created_at, json.dumps(record.to_dict())),
            )

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
            return updated

    def tasks(self, account: str | None = None) -> list[TaskRecord]:
        if account is None:
            rows = self._all("SELECT data FROM tasks ORDER BY rowid")
        else:
            rows = self._all("SELECT data FROM tasks WHERE account = ? ORDER BY rowid", (account,))
        return [TaskRecord.from_dict(json.loads(r[0])) for r in rows]

    def evict_tasks(self, created_before: float) -> int:
        with self._write() as db:
            db.execute(
                "DELETE FROM idempotency WHERE task_id IN (SELECT id FROM tasks WHERE created_at < ?)",
                (created_before,),
            )
            return int(db.execute("DELETE FROM tasks WHERE created_at < ?", (created_before,)).rowcount)

    # idempotency

    def claim_idempotency_key(self, account: str, key: str, task_id: str) -> str:
        with self._write() as db:
            db.execute("INSERT OR IGNORE INTO idempotency VALUES (?, ?, ?)", (account, key, task_id))
            row = db.execute("SELECT task_id FROM idempotency WHERE account = ? AND key = ?", (account, key)).fetchone()
            return str(row[0])

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

    # the clock shared by every worker

    def clock_state(self) -> tuple[float, float | None]:
        row = self._one("SELECT offset, frozen_at FROM clock WHERE id = 1")
        return (float(row[0]), row[1]) if row else (0.0, None)

    def set_clock_state(self, offset: float, frozen_at: float | None) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO clock VALUES (1, ?, ?)", (offset, frozen_at))

    def reset(self, account: str | None = None) -> None:
        with self._write() as db:
            if account is None:
                for table in ("tasks", "idempotency", "uploads", "journal", "rules", "windows", "balances"):
                    db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
                return
            for table in ("tasks", "idempotency", "uploads", "journal", "windows", "balances"):
                db.execute(f"DELETE FROM {table} WHERE account = ?", (account,))  # noqa: S608 - fixed table names
