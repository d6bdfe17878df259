"""PUT /__mock__/state replaces the whole state in one atomic step, on every store.

A store that fails part way through (an item that cannot be written, a write SQLite refuses)
leaves the old state as it was, the clock included; a reader during the replace (another
worker's connection) sees the old state or the new, never a mix.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mockserver import Settings, VirtualClock, create_app
from mockserver.core.canned import CannedResponse
from mockserver.core.faults import Fault, FaultRule
from mockserver.core.records import TaskRecord, UploadRecord
from mockserver.store.base import StateImage
from mockserver.store.sqlite import SQLiteStore
from mockserver.testing.transport import SyncASGITransport

from ..conftest import SPEC, MakeApi, MakeStore
from ..helpers import AUTH, Api, blocking, tiny_png, twin

pytestmark = pytest.mark.all_stores

Peek = Callable[[], None]


def contents(store: Any) -> dict[str, Any]:
    """Everything a replace replaces, as one comparable value (the running totals too)."""
    tasks = store.tasks()
    accounts = sorted({t.account for t in tasks} | {u.account for u in store.upload_records()})
    return {
        "tasks": [t.to_dict() for t in tasks],
        "count": store.task_count(),
        "uploads": [(u.id, u.account, u.size, store.get_upload(u.id)) for u in store.upload_records()],
        "usage": {a: tuple(store.upload_usage(a)) for a in accounts},
        "spending": {a: tuple(store.spending(a, 2e9)) for a in accounts},
        "balances": store.balances(),
        "settings": store.all_account_settings(),
        "rules": [(r.to_dict(), store.fault_rule_counts().get(r.id)) for r in store.fault_rules()],
        "canned": [r.to_dict() for r in store.canned_responses()],
        "journal": [e["path"] for e in store.journal()],
    }


# -- HTTP: a failure part way through a PUT ------------------------------------------------------


def seed(api: Api, token: str, tasks: int) -> dict[str, Any]:
    """Tasks, a rule, a canned response, a balance, an account's settings and an upload of ``token``'s;
    the exported document (with the upload's bytes)."""
    client = api.client
    for _ in range(tasks):
        assert client.post("/__mock__/tasks", json={"token": token, "status": "SUCCESS"}).status_code == 200
    rule = {"scenario": "error_500", "endpoint": "poll", "times": 3}
    assert client.post("/__mock__/scenarios", json=rule).status_code == 200
    canned = {"path": f"/v1/{token}", "status": 299, "text": token}
    assert client.post("/__mock__/responses", json=canned).status_code == 200
    assert client.post("/__mock__/balances", json={"token": token, "balance": 100}).status_code == 200
    assert client.post(f"/__mock__/accounts/{token}", json={"task_dialect": "mj"}).status_code == 200
    files = {"file": ("a.png", tiny_png(), "image/png")}
    assert client.post("/v1/uploads/images", files=files, headers={"Authorization": f"Bearer {token}"}).is_success
    state: dict[str, Any] = client.get("/__mock__/state", params={"upload_data": "true"}).json()
    return state


@pytest.fixture
def old_and_new(make_api: MakeApi) -> tuple[Api, dict[str, Any], dict[str, Any]]:
    """A fake holding one state (exported), and a document of another one to put in its place."""
    api = make_api()
    old = seed(api, "old-state", 3)
    new = seed(make_api(), "new-state", 6)
    new["clock"]["now"] = old["clock"]["now"] + 3600  # the import would move the clock forward
    return api, old, new


class Poison:
    """Writing the task ``peek_id`` calls ``peek`` (a reader looks at the state meanwhile); writing
    ``failing_id`` raises, as a store failing part way would. Every store writes a task as ``pack``
    makes it (``to_json`` packs it)."""

    def __init__(self, peek_id: str, failing_id: str, peek: Peek) -> None:
        self.peek_id, self.failing_id, self.peek = peek_id, failing_id, peek
        self.failures: list[str] = []
        self.packed = TaskRecord.pack

    def pack(self, record: TaskRecord) -> bytes:
        if record.id == self.peek_id:
            self.peek()
        if record.id == self.failing_id:
            self.failures.append(record.id)
            raise RuntimeError("injected: the store failed part way")
        return self.packed(record)


def test_a_failure_part_way_leaves_the_old_state_and_readers_never_see_a_mix(
    old_and_new: tuple[Api, dict[str, Any], dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, old, new = old_and_new
    store = blocking(api.fake.store)
    other = twin(store)
    store.journal()  # (the journal entries the hot path queued: written)
    before, clock = contents(other), api.clock.now()
    seen: list[list[str]] = []
    ids = [t["id"] for t in new["tasks"]]
    poison = Poison(ids[2], ids[4], lambda: seen.append([t.id for t in other.tasks()]))
    monkeypatch.setattr(TaskRecord, "pack", lambda record: poison.pack(record))

    answer = api.client.put("/__mock__/state", json=new)

    assert poison.failures and answer.status_code == 500, answer.text
    assert seen == [[t["id"] for t in old["tasks"]]]  # during the replace: the old state, whole
    assert contents(other) == before  # afterwards: the old state, as it was
    assert api.clock.now() == clock  # the clock did not move either
    assert api.client.get("/__mock__/state", params={"upload_data": "true"}).json() == old

    monkeypatch.undo()
    assert api.client.put("/__mock__/state", json=new).status_code == 200
    after = api.client.get("/__mock__/state", params={"upload_data": "true"}).json()
    assert after == new and contents(other)["journal"] == []
    assert api.clock.now() == new["clock"]["now"]


def sqlite_api(path: Path) -> Api:
    """A fake on an SQLite file, called in-process (as ``make_api`` makes them)."""
    clock = VirtualClock()
    app = create_app(Settings(task_seconds=10.0), clock=clock, spec=SPEC, store=SQLiteStore(path))
    return Api(httpx.Client(transport=SyncASGITransport(app), base_url="http://testserver", headers=AUTH), app, clock)


def test_an_sqlite_write_refused_part_way_leaves_the_old_state(tmp_path: Path) -> None:
    """A real SQLite error in the middle of the replace (a trigger refuses the upload, written after the
    tasks): one transaction, rolled back whole."""
    api, other = sqlite_api(tmp_path / "a.db"), sqlite_api(tmp_path / "b.db")
    old, new = seed(api, "old-state", 3), seed(other, "new-state", 6)
    assert isinstance(api.fake.store, SQLiteStore)
    store = blocking(api.fake.store)
    db = sqlite3.connect(store.path)
    db.execute(
        f"CREATE TRIGGER refuse BEFORE INSERT ON uploads WHEN new.account <> '{old['uploads'][0]['account']}' "
        "BEGIN SELECT RAISE(ABORT, 'injected: the upload cannot be written'); END"
    )
    db.commit()
    store.journal()  # (the journal entries the hot path queued: written)
    before = contents(twin(store))

    assert api.client.put("/__mock__/state", json=new).status_code == 500

    assert contents(twin(store)) == before
    assert api.client.get("/__mock__/state", params={"upload_data": "true"}).json() == old
    db.execute("DROP TRIGGER refuse")
    db.commit()
    db.close()
    assert api.client.put("/__mock__/state", json=new).status_code == 200
    assert api.client.get("/__mock__/state", params={"upload_data": "true"}).json() == new
    for made in (api, other):
        made.client.close()


# -- the store method ----------------------------------------------------------------------------


def task(task_id: str, account: str, **changes: Any) -> TaskRecord:
    fields: dict[str, Any] = {
        "id": task_id, "account": account, "action": "VIDEO", "created_at": 1_000.0, "duration": 8.0, "prompt": "p",
        "mode": "FAST", "clips": 2, "price_key": "midjourney@video", "quantity": 2, "unit_price": 2.0,
        "video_type": "vid_1.1_i2v_480", "params": {"notes": []},
    }  # fmt: skip
    return TaskRecord(**{**fields, **changes})


def image(account: str, tasks: int) -> StateImage:
    """A whole state of one account: charged tasks (one failing, so refunded), an upload, the rest."""
    records = [task(f"task_{account}_{n}", account, outcome="failure" if n == 1 else None) for n in range(tasks)]
    data = tiny_png()
    upload = UploadRecord(f"upl_{account}", account, "a.png", "image/png", len(data), 1_000.0, data)
    return StateImage(
        tasks=records,
        uploads=[upload],
        balances={account: 50.0},
        account_settings={account: {"task_dialect": "mj"}},
        fault_rules=[FaultRule(f"rule_{account}", Fault("error_500"), endpoint="poll", times=3, fired=1)],
        canned_responses=[CannedResponse(f"resp_{account}", f"/v1/{account}", fired=2)],
    )


class Poisoned(TaskRecord):
    """A task no store can write: its serialisations fail (a store failing on this item)."""

    def to_json(self) -> str:
        raise RuntimeError("injected")

    def pack(self) -> bytes:
        raise RuntimeError("injected")


def test_replace_state_puts_the_image_in_place_of_everything(make_store: MakeStore) -> None:
    store = blocking(make_store())
    store.replace_state(image("acct_old", 3))
    store.append_journal({"path": "/old"})
    store.replace_state(image("acct_new", 4))
    got = contents(store)
    assert [t["id"] for t in got["tasks"]] == [f"task_acct_new_{n}" for n in range(4)] and got["count"] == 4
    assert got["spending"] == {"acct_new": (16.0, 4.0)}  # four charged 4 each, one refunded
    assert got["usage"] == {"acct_new": (len(tiny_png()), len(tiny_png()))}
    assert got["balances"] == {"acct_new": 50.0} and got["settings"] == {"acct_new": {"task_dialect": "mj"}}
    assert [(rule["id"], fired) for rule, fired in got["rules"]] == [("rule_acct_new", 1)]
    assert [(r["id"], r["fired"]) for r in got["canned"]] == [("resp_acct_new", 2)]
    assert got["journal"] == []


@pytest.mark.parametrize("at", [0, 2, 4])
def test_replace_state_that_fails_on_an_item_changes_nothing(make_store: MakeStore, at: int) -> None:
    store = blocking(make_store())
    store.replace_state(image("acct_old", 3))
    store.append_journal({"path": "/old"})
    before = contents(store)
    new = image("acct_new", 5)
    tasks = list(new.tasks)
    tasks[at] = Poisoned(**{f: getattr(tasks[at], f) for f in tasks[at].__dataclass_fields__})
    with pytest.raises(RuntimeError, match="injected"):
        store.replace_state(StateImage(tasks, new.uploads, new.balances, new.account_settings, new.fault_rules))
    assert contents(store) == before
    assert contents(twin(store)) == before


def test_a_replace_keeps_journal_sequence_numbers_going(make_store: MakeStore) -> None:
    store = blocking(make_store())
    first = store.append_journal({"path": "/a"})
    store.replace_state(image("acct_new", 1))
    assert store.append_journal({"path": "/b"}) > first
    assert [e["path"] for e in store.journal(since=first)] == ["/b"]
