"""The SQLite file's tables, triggers and migration, and which errors mean a full disk."""

from __future__ import annotations

import json
import sqlite3
from contextlib import suppress

from ...core.errors import StoreUnavailable
from ...core.records import TaskRecord
from . import steps

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

# The errors of a write that found no room: SQLite's own, and the I/O errors of a file (or the WAL's
# index) that could not grow. ``SQLiteWriter.make_room`` answers them.
OUT_OF_SPACE = ("SQLITE_FULL", "SQLITE_IOERR_WRITE", "SQLITE_IOERR_SHMSIZE")


def out_of_space(error: BaseException | None) -> bool:
    """Whether ``error`` (a driver's error, or the ``StoreUnavailable`` made of one) is a write that
    found no room on the disk."""
    cause = error.__cause__ if isinstance(error, StoreUnavailable) else error
    if not isinstance(cause, sqlite3.Error):
        return False
    return getattr(cause, "sqlite_errorname", "") in OUT_OF_SPACE or "disk is full" in str(cause)


def migrate(db: sqlite3.Connection) -> None:
    """Create the tables; a file from before the running totals gets them summed from its tasks."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]  # another worker may have been first
        if version < SCHEMA_VERSION:
            for statement in filter(str.strip, SCHEMA.split(";")):
                db.execute(statement)
            for statement in SHARED_SCHEMA:
                db.execute(statement)
            _add_upload_columns(db)
            for statement in UPLOAD_SCHEMA:  # after the columns: the totals are summed from them once
                db.execute(statement)
            if version < 2:  # the running totals came with version 2: sum them from the tasks once
                for (data,) in db.execute("SELECT data FROM tasks ORDER BY rowid").fetchall():
                    steps.book(db, TaskRecord.from_json(data))
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise


def _add_upload_columns(db: sqlite3.Connection) -> None:
    """A file from before version 5: the uploads' size and time as columns, filled from the metadata."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(uploads)")}
    if "size" in columns:
        return
    db.execute("ALTER TABLE uploads ADD COLUMN size INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE uploads ADD COLUMN created_at REAL NOT NULL DEFAULT 0")
    for upload_id, meta in db.execute("SELECT id, meta FROM uploads").fetchall():
        fields = json.loads(meta)
        db.execute(
            "UPDATE uploads SET size = ?, created_at = ? WHERE id = ?",
            (int(fields["size"]), float(fields["created_at"]), upload_id),
        )
