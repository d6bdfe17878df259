"""A store that cannot answer gives 503 ``server_error`` with ``Retry-After`` in bounded time, the health
check says it is the store, and the server recovers by itself when the store comes back.

Redis stopped, Redis frozen (SIGSTOP), an SQLite file that is read-only, full, or locked by another
process: first each store alone (short timeouts), then the server (``mockserver serve``, the default
2 s store timeout) with a real redis-server or SQLite file. Every wait is bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest

from mockserver.core.canned import CannedResponse
from mockserver.core.errors import StoreUnavailable
from mockserver.core.faults import Fault, FaultRule
from mockserver.core.records import TaskRecord, UploadRecord
from mockserver.store import StateImage, Store
from mockserver.store.guard import Guard
from mockserver.store.redis import RedisStore
from mockserver.store.sqlite import SQLiteStore
from mockserver.testing.process import ServerProcess, free_port

from ..helpers import blocking

AUTH = {"Authorization": "Bearer store-failures"}
VIDEO = "/v1/midjourney/generations/video"
BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"]}
ANSWER_WITHIN = 3.0  # seconds: the server's store timeout is 2 s


def task(task_id: str, created_at: float = 1.0) -> TaskRecord:
    return TaskRecord(
        id=task_id, account="acct_a", action="VIDEO", created_at=created_at, duration=8.0, prompt="p", mode="FAST",
        clips=1, price_key="midjourney@video", quantity=1, unit_price=8.0,
    )  # fmt: skip


def eventually(check: Callable[[], bool], within: float = 15.0, every: float = 0.1) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"not within {within} s"
        time.sleep(every)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def clock_of(store: Any) -> tuple[float, float | None]:
    """The clock's state as a request reads it: the shared settings, made current when the store can."""
    with suppress(StoreUnavailable):
        store.refresh()
    clock: tuple[float, float | None] = store.shared().clock
    return clock


def unavailable(call: Callable[[], Any]) -> tuple[StoreUnavailable, float]:
    """The StoreUnavailable ``call`` raises, and how long it took to."""
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        call()
    return caught.value, time.monotonic() - started


# -- the guard -----------------------------------------------------------------------------------


def test_guard_answers_at_once_after_a_slow_failure_then_asks_again() -> None:
    now = [100.0]
    guard = Guard("db", (ConnectionError,), retry_after=1.0, slow=0.1, clock=lambda: now[0])
    with pytest.raises(StoreUnavailable) as quick, guard:
        raise ConnectionError("refused")
    assert (quick.value.status, quick.value.type, quick.value.headers) == (503, "server_error", {"Retry-After": "1"})
    assert quick.value.body() == {
        "error": {"message": quick.value.message, "type": "server_error", "code": 503, "param": None}
    }
    assert quick.value.reason == "db: refused" and guard.reason is None  # quick to meet again: ask again
    with pytest.raises(StoreUnavailable), guard:
        now[0] += 2.0  # a call that waited out its timeout
        raise ConnectionError("timed out")
    assert guard.reason == "db: timed out"
    with pytest.raises(StoreUnavailable, match="db: timed out"), guard:
        pytest.fail("the store is asked again within the second")
    now[0] += 1.0
    with guard:  # asked again, and it answers
        pass
    assert guard.reason is None
    with pytest.raises(KeyError), guard:  # other errors are the store's bugs, not its absence
        now[0] += 2.0
        raise KeyError("x")
    assert guard.reason is None


# -- SQLite --------------------------------------------------------------------------------------


def test_sqlite_locked_by_another_process_answers_within_its_timeout(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = blocking(SQLiteStore(path, timeout=0.5))
    store.put_task_once(task("task_1"), None)
    store.set_clock_state(5.0, None)
    assert clock_of(store) == (5.0, None)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        assert store.get_task("task_1") == task("task_1")  # WAL: readers go on
        error, took = unavailable(lambda: store.put_task_once(task("task_2"), None))
        assert "database is locked" in error.message and 0.4 < took < 1.5
        _, took = unavailable(lambda: store.append_journal({"path": "/"}))
        assert took < 0.1, "answered at once while the store is known to be stuck"
        assert clock_of(store) == (5.0, None)  # the last state read
        time.sleep(1.0)
        error, took = unavailable(store.ping)
        assert "database is locked" in error.reason and took < 1.5
    finally:
        other.execute("ROLLBACK")
        other.close()
    time.sleep(1.0)
    store.ping()
    assert store.put_task_once(task("task_2"), None) == "task_2"


def test_sqlite_full_answers_503_then_recovers(tmp_path: Path) -> None:
    store = blocking(SQLiteStore(tmp_path / "state.db", timeout=0.5))
    db = store.writer.connection()
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # no room for one more page
    big = {"path": "/", "body": "x" * 100_000}
    error, took = unavailable(lambda: store.append_journal(big))
    assert "full" in error.reason and took < 1.0
    store.append_journal(big)  # opened afresh; the room is back


def make_read_only(path: Path, *, while_open: bool = False) -> Callable[[], None]:
    """Make the database ``path`` and its WAL read-only; return what undoes it (once).

    Without root: chmod 444, which stops the next open, not a process that has the file open
    already (``while_open`` skips the test then). As root, whom permissions do not stop: the
    immutable attribute, which also fails writes through open files (EPERM, as a file system
    remounted read-only fails them with EROFS); skipped when chattr cannot set it here."""
    files = [f for f in (path, path.with_name(path.name + "-wal")) if f.exists()]
    modes = [f.stat().st_mode for f in files]
    if os.geteuid() != 0:
        if while_open:
            pytest.skip("without root, a file open for writing cannot be made read-only under its writer")
        for f in files:
            f.chmod(0o444)
        chattr = None
    else:
        chattr = shutil.which("chattr")
        if chattr is None or subprocess.run([chattr, "+i", *map(str, files)], check=False).returncode:
            pytest.skip("running as root without chattr +i: a file cannot be made read-only here")
    undone = False

    def undo() -> None:
        nonlocal undone
        if not undone:
            if chattr is not None:
                subprocess.run([chattr, "-i", *map(str, files)], check=True)
            for f, mode in zip(files, modes, strict=True):
                f.chmod(mode)
            undone = True

    return undo


def test_sqlite_read_only_file_reads_answers_503_on_writes_and_recovers(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = blocking(SQLiteStore(path))
    first.put_task_once(task("task_1"), "k")
    first.close()
    writable = make_read_only(path)
    try:
        store = blocking(SQLiteStore(path, timeout=0.5))
        assert store.get_task("task_1") == task("task_1")
        error, took = unavailable(lambda: store.put_task_once(task("task_2"), None))
        assert "readonly" in error.reason and took < 1.0
        assert store.get_task("task_1") == task("task_1")  # a quick failure: reads go on
        error, _ = unavailable(store.ping)
        assert "readonly" in error.reason
    finally:
        writable()
    store.ping()  # opened afresh, read-write
    assert store.put_task_once(task("task_2"), None) == "task_2"


def test_sqlite_file_that_cannot_be_opened_yet_answers_503_until_it_can(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.mkdir()  # a directory where the file should be
    store = blocking(SQLiteStore(path, timeout=0.2))  # no exception: a server on it starts, and says what is wrong
    error, _ = unavailable(lambda: store.get_task("task_1"))
    assert "unable to open" in error.reason
    path.rmdir()
    assert store.get_task("task_1") is None  # the failure was quick: the next call simply tries again
    assert store.put_task_once(task("task_1"), None) == "task_1"


# -- Redis ---------------------------------------------------------------------------------------


def every_call(store: Any) -> dict[str, Callable[[], Any]]:
    """One call of every Store method."""
    return {
        "put_task_once": lambda: store.put_task_once(task("task_1"), "k", 10.0),
        "put_task": lambda: store.put_task(task("task_1")),
        "get_task": lambda: store.get_task("task_1"),
        "update_task": lambda: store.update_task("task_1", lambda r: r),
        "tasks": lambda: store.tasks(),
        "task_count": lambda: store.task_count(),
        "task_page": lambda: store.task_page("acct_a", newest_first=True, offset=1, limit=2),
        "evict_tasks": lambda: store.evict_tasks(5.0),
        "idempotent_task": lambda: store.idempotent_task("acct_a", "k"),
        "put_upload": lambda: store.put_upload(UploadRecord("upl_1", "acct_a", "a.png", "image/png", 1, 1.0, b"x")),
        "get_upload": lambda: store.get_upload("upl_1"),
        "upload_records": lambda: store.upload_records(),
        "delete_upload": lambda: store.delete_upload("upl_1"),
        "append_journal": lambda: store.append_journal({"path": "/"}),
        "journal": lambda: store.journal(),
        "put_fault_rule": lambda: store.put_fault_rule(FaultRule("rule_1", Fault("never"))),
        "fault_rules": lambda: store.fault_rules(),
        "delete_fault_rule": lambda: store.delete_fault_rule("rule_1"),
        "fire_fault_rule": lambda: store.fire_fault_rule("rule_1"),
        "fault_rule_counts": lambda: store.fault_rule_counts(),
        "put_canned_response": lambda: store.put_canned_response(CannedResponse("resp_1", "/v1/tasks/*")),
        "canned_responses": lambda: store.canned_responses(),
        "delete_canned_response": lambda: store.delete_canned_response("resp_1"),
        "fire_canned_response": lambda: store.fire_canned_response("resp_1"),
        "account_settings": lambda: store.account_settings("acct_a"),
        "set_account_settings": lambda: store.set_account_settings("acct_a", {"task_dialect": "mj"}),
        "all_account_settings": lambda: store.all_account_settings(),
        "hit": lambda: store.hit("acct_a", 1),
        "set_balance": lambda: store.set_balance("acct_a", 1.0),
        "balances": lambda: store.balances(),
        "spending": lambda: store.spending("acct_a", 1.0),
        "set_clock_state": lambda: store.set_clock_state(1.0, None),
        "reset": lambda: store.reset(),
        "replace_state": lambda: store.replace_state(StateImage(tasks=[task("task_1")])),
        "ping": lambda: store.ping(),
        "refresh": lambda: store.refresh(),
        "upload_usage": lambda: store.upload_usage("acct_a"),
    }


def test_every_redis_call_answers_503_when_nothing_listens() -> None:
    store = blocking(RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5))
    calls = every_call(store)
    protocol = {name for name in vars(Store) if not name.startswith("_")} - {"shared", "note_clock", "append_entry"}
    assert protocol <= set(calls), f"add a call of {sorted(protocol - set(calls))}"
    for name, call in calls.items():
        error, took = unavailable(call)
        assert error.reason.startswith("redis: ") and took < 1.0, name
    assert clock_of(store) == (0.0, None)  # the clock runs on: the last state read (none yet)


@contextmanager
def redis_on(port: int, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of this test's own on ``port`` (so that it can be stopped, frozen, restarted)."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does it)")
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([*command, "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.close()
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            process.wait(timeout=10)


def test_redis_frozen_answers_within_the_timeout_and_recovers(tmp_path: Path) -> None:
    port = free_port()
    with redis_on(port, tmp_path) as server:
        store = blocking(RedisStore(f"redis://127.0.0.1:{port}/0", prefix="frozen:", timeout=0.5))
        store.set_clock_state(7.0, None)
        assert clock_of(store) == (7.0, None)
        server.send_signal(signal.SIGSTOP)
        try:
            error, took = unavailable(lambda: store.put_task_once(task("task_1"), None))
            assert "Timeout" in error.reason and took < 1.5
            _, took = unavailable(store.ping)
            assert took < 0.1, "answered at once while Redis is known to be stuck"
            state, took = timed(lambda: clock_of(store))
            assert state == (7.0, None) and took < 0.1
        finally:
            server.send_signal(signal.SIGCONT)
        eventually(lambda: store_answers(store))
        assert store.put_task_once(task("task_1"), None) == "task_1"


def store_answers(store: Any) -> bool:
    try:
        store.ping()
    except StoreUnavailable:
        return False
    return True


# -- the server ----------------------------------------------------------------------------------


def client_of(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, headers=AUTH, timeout=10)


def assert_store_unavailable(client: httpx.Client) -> None:
    """A submission and both health checks answer 503 within ANSWER_WITHIN seconds, naming the store."""
    response, took = timed(lambda: client.post(VIDEO, json=BODY))
    assert response.status_code == 503 and took < ANSWER_WITHIN, (response.status_code, took, response.text)
    assert response.headers["retry-after"] == "1"
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == ("server_error", 503, None)
    assert "state store" in error["message"]
    for path in ("/__mock__/health", "/healthz"):
        response, took = timed(lambda path=path: client.get(path))  # type: ignore[misc]
        assert response.status_code == 503 and took < ANSWER_WITHIN, (path, response.status_code, took)
        body = response.json()
        assert body["status"] == "unhealthy" and body["store"] != "ok", body


def assert_recovers(client: httpx.Client) -> None:
    eventually(lambda: client.post(VIDEO, json=BODY).status_code == 200)
    health = client.get("/__mock__/health")
    assert (health.status_code, health.json()["status"], health.json()["store"]) == (200, "ok", "ok")


@pytest.mark.e2e
def test_server_with_redis_stopped_answers_503_then_recovers_when_it_is_back(tmp_path: Path) -> None:
    port = free_port()
    with redis_on(port, tmp_path) as redis_server:
        server = ServerProcess(["--state", f"redis://127.0.0.1:{port}/0", "--task-seconds", "0"])
        with server, client_of(server) as client:
            assert client.post(VIDEO, json=BODY).status_code == 200
            redis_server.terminate()
            redis_server.wait(timeout=10)
            assert_store_unavailable(client)
            with redis_on(port, tmp_path):  # the same port again
                assert_recovers(client)


@pytest.mark.e2e
def test_server_with_redis_frozen_answers_in_bounded_time(tmp_path: Path) -> None:
    port = free_port()
    with redis_on(port, tmp_path) as redis_server:
        server = ServerProcess(["--state", f"redis://127.0.0.1:{port}/0", "--task-seconds", "0"])
        with server, client_of(server) as client:
            assert client.post(VIDEO, json=BODY).status_code == 200
            redis_server.send_signal(signal.SIGSTOP)
            try:
                assert_store_unavailable(client)
            finally:
                redis_server.send_signal(signal.SIGCONT)
            assert_recovers(client)


@pytest.mark.e2e
def test_server_on_a_locked_sqlite_file_answers_503_then_recovers(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    server = ServerProcess(["--state", f"sqlite:///{path}", "--task-seconds", "0"])
    with server, client_of(server) as client:
        assert client.post(VIDEO, json=BODY).status_code == 200
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        try:
            assert_store_unavailable(client)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert_recovers(client)


@pytest.mark.e2e
def test_server_on_an_sqlite_file_made_read_only_answers_503_then_recovers(tmp_path: Path) -> None:
    """The file becomes read-only under the running server: submissions and the health checks say
    503 at once; once it is writable again, the same server recovers."""
    path = tmp_path / "state.db"
    server = ServerProcess(["--state", f"sqlite:///{path}", "--task-seconds", "0"])
    with server, client_of(server) as client:
        assert client.post(VIDEO, json=BODY).status_code == 200
        writable = make_read_only(path, while_open=True)
        try:
            assert_store_unavailable(client)
        finally:
            writable()
        assert_recovers(client)
