"""Each atomic step of the SQLite store as a function of a connection inside a write transaction.

Every write of ``SQLiteStore`` is one of these, made by the group-commit writer (``writer.SQLiteWriter``):
many in one transaction, each in a savepoint of its own, so a step is all or nothing.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from ...core.canned import CannedResponse
from ...core.faults import FaultRule
from ...core.ledger import refund_due
from ...core.records import TaskRecord, UploadRecord
from ..base import (
    EPSILON,
    AccountLimit,
    Limit,
    Overdraft,
    StateImage,
    UploadRefused,
    UploadUsage,
    booking,
    upload_refusal,
)

LEDGER = ("spend", "refunds")
# The tables an account's data lives in (a reset of one account empties its rows).
ACCOUNT_TABLES = ("tasks", "idempotency", "uploads", "journal", "windows", "balances", *LEDGER, "account_settings")
ITEM_TABLES = ("uploads", "rules", "canned")  # what ``delete`` deletes from, by id


class Undone(Exception):
    """Raised by a step that wrote only to see that it could (``ping``): its savepoint undoes the write."""


# -- tasks -------------------------------------------------------------------------------------------


def put_once(db: sqlite3.Connection, record: TaskRecord, key: str | None, limit: Limit) -> str | Overdraft:
    """A task and its charge, once per idempotency key; an ``Overdraft`` when the balance is short."""
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
        spent = settle(db, record.account, record.created_at)
        if limit is not None and record.charge > limit - spent + EPSILON:
            return Overdraft(limit - spent)
    insert(db, record)
    book(db, record)
    if key is not None:
        db.execute("INSERT INTO idempotency VALUES (?, ?, ?)", (record.account, key, record.id))
    return record.id


def put_task(db: sqlite3.Connection, record: TaskRecord) -> None:
    """A task stored or replaced as it is, its charge booked again when it changed."""
    row = db.execute("SELECT data FROM tasks WHERE id = ?", (record.id,)).fetchone()
    insert(db, record)
    rebook(db, TaskRecord.from_json(row[0]) if row else None, record)


def insert(db: sqlite3.Connection, record: TaskRecord) -> None:
    db.execute(
        "INSERT INTO tasks (id, account, created_at, data) VALUES (?, ?, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET account = excluded.account, data = excluded.data",
        (record.id, record.account, record.created_at, record.to_json()),
    )


def update_task(db: sqlite3.Connection, task_id: str, change: Callable[[TaskRecord], TaskRecord]) -> TaskRecord | None:
    row = db.execute("SELECT data FROM tasks WHERE id = ?", (task_id,)).fetchone()
    if row is None:
        return None
    record = TaskRecord.from_json(row[0])
    updated = change(record)
    if updated is not record:
        db.execute("UPDATE tasks SET data = ? WHERE id = ?", (updated.to_json(), task_id))
        rebook(db, record, updated)
    return updated


def evict_tasks(db: sqlite3.Connection, created_before: float, limit: int | None = None) -> int:
    """The oldest tasks created before ``created_before`` (at most ``limit``), with their keys and charges."""
    rows = db.execute(
        "SELECT id, data FROM tasks WHERE created_at < ? ORDER BY created_at LIMIT ?",
        (created_before, -1 if limit is None else limit),
    ).fetchall()
    for task_id, data in rows:
        unbook(db, TaskRecord.from_json(data))
        db.execute("DELETE FROM idempotency WHERE task_id = ?", (task_id,))
        db.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
    return len(rows)


# -- running totals ----------------------------------------------------------------------------------


def book(db: sqlite3.Connection, record: TaskRecord) -> None:
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


def unbook(db: sqlite3.Connection, record: TaskRecord) -> None:
    if not record.charge:
        return
    db.execute("UPDATE spend SET charged = charged - ? WHERE account = ?", (record.charge, record.account))
    queued = db.execute("DELETE FROM refunds WHERE task_id = ?", (record.id,)).rowcount
    if not queued and refund_due(record) is not None:  # its refund was moved already
        db.execute("UPDATE spend SET refunded = refunded - ? WHERE account = ?", (record.charge, record.account))


def rebook(db: sqlite3.Connection, old: TaskRecord | None, new: TaskRecord | None) -> None:
    if old is not None and new is not None and booking(old) == booking(new):
        return
    if old is not None:
        unbook(db, old)
    if new is not None:
        book(db, new)


def settle(db: sqlite3.Connection, account: str, now: float) -> float:
    """Move the account's refunds due by ``now`` out of the queue; what it has spent."""
    moved = db.execute("DELETE FROM refunds WHERE account = ? AND due <= ? RETURNING amount", (account, now))
    total = sum(amount for (amount,) in moved.fetchall())
    if total:
        db.execute("UPDATE spend SET refunded = refunded + ? WHERE account = ?", (total, account))
    row = db.execute("SELECT charged - refunded FROM spend WHERE account = ?", (account,)).fetchone()
    return float(row[0]) if row else 0.0


# -- uploads -----------------------------------------------------------------------------------------


def upsert_upload(db: sqlite3.Connection, upload: UploadRecord) -> None:
    """Store or replace an upload. An upsert, not ``INSERT OR REPLACE``: the totals' triggers see a
    replaced upload as an update."""
    meta = {k: getattr(upload, k) for k in ("id", "account", "filename", "content_type", "size", "created_at")}
    db.execute(
        "INSERT INTO uploads (id, account, meta, data, size, created_at) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET account = excluded.account, meta = excluded.meta, data = excluded.data, "
        "size = excluded.size, created_at = excluded.created_at",
        (upload.id, upload.account, json.dumps(meta), upload.data, upload.size, upload.created_at),
    )


def put_upload(
    db: sqlite3.Connection,
    upload: UploadRecord,
    account_quota: int | None,
    total_quota: int | None,
    evict_by: float | None,
) -> UploadRefused | None:
    """The expired uploads forgotten (``evict_by``, whatever comes next), then the upload stored unless
    it passes a quota (``base.upload_refusal``, read from the running totals)."""
    if evict_by is not None:  # the oldest first, by the index; the triggers take their bytes out
        db.execute("DELETE FROM uploads WHERE created_at <= ?", (evict_by,))
    if account_quota is not None or total_quota is not None:
        refused = upload_refusal(upload_usage(db, upload.account), upload.size, account_quota, total_quota)
        if refused is not None:
            return refused
    upsert_upload(db, upload)
    return None


def upload_usage(db: sqlite3.Connection, account: str) -> UploadUsage:
    row = db.execute(  # one statement: one snapshot
        "SELECT (SELECT n FROM upload_bytes WHERE account = ?), (SELECT n FROM upload_total WHERE id = 1)",
        (account,),
    ).fetchone()
    return UploadUsage(int(row[0] or 0), int(row[1] or 0))


# -- faults, canned responses, account settings, rate windows ----------------------------------------


def put_fault_rule(db: sqlite3.Connection, rule: FaultRule) -> None:
    db.execute(
        "INSERT OR REPLACE INTO rules (id, pos, data, fired) "
        "VALUES (?, (SELECT COALESCE(MAX(pos), 0) + 1 FROM rules), ?, ?)",
        (rule.id, json.dumps(rule.to_dict()), rule.fired),
    )


def put_canned_response(db: sqlite3.Connection, response: CannedResponse) -> None:
    db.execute(
        "INSERT INTO canned (id, pos, data, fired) VALUES (?, (SELECT COALESCE(MAX(pos), 0) + 1 FROM canned), "
        "?, ?) ON CONFLICT(id) DO UPDATE SET data = excluded.data, fired = excluded.fired",
        (response.id, json.dumps(response.to_dict()), response.fired),
    )


def fire(db: sqlite3.Connection, table: str, item_id: str) -> bool:
    """Count one use of a fault rule (``rules``) or canned response (``canned``); False when it has
    none left (its ``times`` used up) or is gone."""
    row = db.execute(f"SELECT data, fired FROM {table} WHERE id = ?", (item_id,)).fetchone()  # noqa: S608
    if row is None:
        return False
    times = json.loads(row[0]).get("times")
    if times is not None and row[1] >= times:
        return False
    db.execute(f"UPDATE {table} SET fired = fired + 1 WHERE id = ?", (item_id,))  # noqa: S608 - fixed names
    return True


def delete(db: sqlite3.Connection, table: str, item_id: str) -> bool:
    """Forget an upload (``uploads``), a fault rule (``rules``) or a canned response (``canned``)."""
    if table not in ITEM_TABLES:
        raise ValueError(f"no items in {table!r}")
    return db.execute(f"DELETE FROM {table} WHERE id = ?", (item_id,)).rowcount > 0  # noqa: S608 - fixed names


def set_account_settings(db: sqlite3.Connection, account: str, settings: Mapping[str, Any]) -> None:
    if settings:
        db.execute("INSERT OR REPLACE INTO account_settings VALUES (?, ?)", (account, json.dumps(dict(settings))))
    else:
        db.execute("DELETE FROM account_settings WHERE account = ?", (account,))


def hit(db: sqlite3.Connection, account: str, window: int) -> int:
    """One request counted in ``account``'s rate window; the window's count."""
    row = db.execute(
        "INSERT INTO windows VALUES (?, ?, 1) ON CONFLICT(account) DO UPDATE SET "
        "count = CASE WHEN window = excluded.window THEN count + 1 ELSE 1 END, window = excluded.window "
        "RETURNING count",
        (account, window),
    ).fetchone()
    return int(row[0])


def set_balance(db: sqlite3.Connection, account: str, amount: float | None) -> None:
    db.execute("INSERT OR REPLACE INTO balances VALUES (?, ?)", (account, amount))


def set_clock(db: sqlite3.Connection, offset: float, frozen_at: float | None) -> None:
    db.execute("INSERT OR REPLACE INTO clock VALUES (1, ?, ?)", (offset, frozen_at))


# -- the journal -------------------------------------------------------------------------------------


def append_journal(db: sqlite3.Connection, entries: list[tuple[Any, str]], keep: int) -> int:
    """Journal entries (account, JSON text), the oldest falling out past ``keep``; the last one's number."""
    db.executemany("INSERT INTO journal (account, data) VALUES (?, ?)", entries)
    seq = int(db.execute("SELECT last_insert_rowid()").fetchone()[0])
    db.execute("DELETE FROM journal WHERE seq <= ?", (seq - keep,))  # by the primary key: nothing, or the oldest
    return seq


# -- the whole state ---------------------------------------------------------------------------------


def reset(db: sqlite3.Connection, account: str | None) -> None:
    """Everything ``wipe`` clears, or one account's rows."""
    if account is None:
        wipe(db)
        return
    for table in ACCOUNT_TABLES:
        db.execute(f"DELETE FROM {table} WHERE account = ?", (account,))  # noqa: S608 - fixed table names


def replace_state(db: sqlite3.Connection, image: StateImage) -> None:
    """The wipe and every item of ``image``, in order, as the single-item steps write them: one step, so
    a failure part way leaves the old state, and readers (under WAL) see the old state or the new."""
    wipe(db)
    for record in image.tasks:
        put_task(db, record)
    for upload in image.uploads:
        upsert_upload(db, upload)
    for account, amount in image.balances.items():
        set_balance(db, account, amount)
    for account, values in image.account_settings.items():
        set_account_settings(db, account, values)
    for rule in image.fault_rules:
        put_fault_rule(db, rule)
    for response in image.canned_responses:
        put_canned_response(db, response)


def ping(db: sqlite3.Connection) -> None:
    """A write, undone (``Undone``): a file that is read-only, or locked elsewhere, fails here too."""
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    db.execute(f"PRAGMA user_version = {version}")
    raise Undone()


def wipe(db: sqlite3.Connection) -> None:
    """Everything but the clock (and the journal's sequence numbers)."""
    for table in ("tasks", "idempotency", "uploads", "journal", "rules", "windows", "balances", *LEDGER,
                  "canned", "account_settings"):  # fmt: skip
        db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
    db.execute("DELETE FROM upload_bytes")  # emptied by the uploads' triggers already: made sure
    db.execute("UPDATE upload_total SET n = 0")
