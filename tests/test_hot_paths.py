"""What the hot paths do faster must say the same: ids, JSON in, packed records, lazy journal entries,
store pages and ledger pages, one write per answer; and how the SQLite and Redis stores keep their
copy of the shared settings current across workers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from ulid import ULID

from mockserver import Settings, VirtualClock, service
from mockserver.control import ControlPlane
from mockserver.core import jsonio, ledger, submission
from mockserver.core.errors import ApiError
from mockserver.core.faults import Fault, FaultRule
from mockserver.core.ids import UlidMaker
from mockserver.core.journal import Entry, clipped, cut, journal_headers
from mockserver.core.records import TaskRecord
from mockserver.service import Fake, shortened
from mockserver.store.base import Overdraft
from mockserver.store.redis import RedisHot, RedisStore
from mockserver.store.redis import client as resp
from mockserver.store.redis.client import Client, Options, ReplyError
from mockserver.store.sqlite import SQLiteHot, SQLiteStore
from mockserver.store.sqlite import hot as sqlite_hot
from mockserver.testing.process import ServerProcess

from .conftest import MakeStore
from .store.test_conformance import task

BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"]}


# -- ids -------------------------------------------------------------------------------------------


def test_ids_are_ulids_in_the_order_they_were_made() -> None:
    make = UlidMaker()
    for seconds in (0.0, 1.5, 1_767_225_600.123, 253_402_300_799.0):
        assert ULID.from_str(make(seconds)).milliseconds == int(seconds * 1000)
    same_ms = [make(5.0) for _ in range(3000)]  # crosses at least two steps of the last ten bits
    values = [int(ULID.from_str(text)) for text in same_ms]
    assert values == list(range(values[0], values[0] + 3000))  # each the one before plus one
    assert {ULID.from_str(text).milliseconds for text in same_ms} == {5000}
    assert all(text == str(ULID.from_str(text)) for text in same_ms)  # 26 characters, as the package writes them
    assert make(-1.0)[:10] == "0" * 10 and ULID.from_str(make(1e20)).milliseconds == 2**48 - 1  # clamped
    assert UlidMaker()(0.0) != UlidMaker()(0.0)  # random bits from the first id on, even at time 0


def test_ids_made_on_many_threads_are_distinct_and_in_order_within_each() -> None:
    make = UlidMaker()
    made: list[list[str]] = [[] for _ in range(8)]

    def run(out: list[str]) -> None:
        out.extend(make(7.0) for _ in range(2000))

    threads = [threading.Thread(target=run, args=(out,)) for out in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({text for out in made for text in out}) == 16_000
    assert all(out == sorted(out) for out in made)


def test_accounts_are_remembered_by_header_only_when_valid_and_within_bounds() -> None:
    fake = Fake.open(Settings(api_keys="good").validated())
    assert fake.account("Bearer good") == fake.account("Bearer good") == fake.account("bearer  good ")
    for header in ("Bearer bad", "Basic good", "", None):
        for _ in range(2):  # refused the second time as the first: nothing wrong is remembered
            with pytest.raises(ApiError) as refused:
                fake.account(header)
            assert refused.value.status == 401
    many = Fake.open(Settings().validated())
    accounts = {many.account(f"Bearer token-{n}") for n in range(service.ACCOUNTS_KEPT + 500)}
    assert len(accounts) == service.ACCOUNTS_KEPT + 500  # each token its own account, memo or not
    assert len(many._accounts) <= service.ACCOUNTS_KEPT


# -- JSON in ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1, "b": [1.5, "x", null, true], "c": {"d": "\\u00e9"}}',
        b'{"big": 123456789012345678901234567890}',
        b'{"neg": -98765432109876543210}',
        b'{"a": NaN}',
        b'{"a": 1e400}',
        b'{"a": "\\ud800"}',
        b'{"a": 1,}',
        b"[" * 70 + b"]" * 70,
        b'{"a": "' + b"x" * 30 + b'"}',
        b"\xef\xbb\xbf{}",
        b'{"a": 1, "a": 2}',
    ],
)
def test_reading_json_answers_as_the_standard_parser_did(raw: bytes) -> None:
    def standard(text: bytes) -> Any:  # jsonio.loads without the orjson path
        return jsonio.loads(text.decode("utf-8"))

    try:
        expected: Any = ("ok", standard(raw))
    except ApiError as exc:
        expected = ("refused", exc.message, exc.param)
    try:
        found: Any = ("ok", jsonio.loads(raw))
    except ApiError as exc:
        found = ("refused", exc.message, exc.param)
    assert found == expected
    if found[0] == "ok":
        assert json.dumps(found[1]) == json.dumps(expected[1])  # the same types (an int stays an int)


# -- packed records ----------------------------------------------------------------------------------


def test_records_round_trip_packed_and_as_text() -> None:
    record = task("t1", params={"notes": ["n"], "big": 2**70, "é": 1.5})
    assert TaskRecord.unpack(record.pack()) == record
    assert TaskRecord.unpack(record.pack()).params["big"] == 2**70
    assert TaskRecord.from_json(record.to_json()) == record
    assert TaskRecord.from_json(json.dumps(record.to_dict())) == record  # what the stores kept before
    assert TaskRecord.of(record.to_dict()) == record


def test_the_records_a_submission_makes_without_init_have_every_field_and_no_other() -> None:
    fake = Fake.open(Settings().validated())
    job = submission.video_job(
        BODY, policy="strict", allowed_batch_sizes=(1, 2, 4), defaults={"video_type": "v", "motion": "low",
        "animate_mode": "manual"}, parent=None, max_frame_bytes=1000, measure_upload=lambda url: None,
    )  # fmt: skip
    made = [
        fake.video_record("acct", None, job),
        fake.video_record("acct", Fault("fail"), job),
        fake.imagine_record("acct", None, {"prompt": "p"}),
    ]
    names = [f.name for f in dataclasses.fields(TaskRecord)]
    for record in made:
        assert list(vars(record)) == names  # every field, in order, and nothing else
        assert record == TaskRecord(**vars(record))  # as the generated __init__ makes it


def test_a_video_job_made_without_its_init_has_every_field() -> None:
    job = submission.video_job(
        BODY, policy="strict", allowed_batch_sizes=(1, 2, 4), defaults={"video_type": "v", "motion": "low",
        "animate_mode": "manual"}, parent=None, max_frame_bytes=1000, measure_upload=lambda url: None,
    )  # fmt: skip
    assert {f.name for f in dataclasses.fields(job)} <= set(vars(job))
    assert job == dataclasses.replace(job) and job.quantity == 1


# -- journal entries ---------------------------------------------------------------------------------


def eager(raw_headers: list[tuple[bytes, bytes]], facts: dict[str, Any], size: int) -> dict[str, Any]:
    """An entry as the edge used to build it at once."""
    kept = dict(facts)
    kept.pop("wire_fault", None)
    for name, value in kept.items():
        if name == "body":
            kept[name] = clipped(value)
        elif isinstance(value, str):
            kept[name] = cut(value, 1024)
    return {
        "time": 1.0,
        "wall_time": 2.0,
        "method": "POST",
        "path": "/v1/midjourney/generations/video",
        "query": "a=1",
        "headers": journal_headers(raw_headers),
        "body_bytes": size,
        "status": 200,
        "duration_ms": 1.5,
        **kept,
    }


@pytest.mark.parametrize(
    "body",
    [
        BODY,
        {"prompt": "p" * 300, "image_urls": ["x" * 500] * 3},
        {"k" * 100: "long field name", "nested": [{"l" * 70: 1}]},
        {"prompt": "p", "image_urls": [f"https://example.com/{n}.png" for n in range(400)]},
        {"n": [1e15, 1e-7, 2**70, True, None]},
    ],
)
def test_a_lazy_journal_entry_says_what_an_eager_one_said(body: dict[str, Any]) -> None:
    raw = json.dumps(body).encode()
    headers = [(b"host", b"x"), (b"authorization", b"Bearer secret"), (b"x-long", b"v" * 2000)]
    facts = {"endpoint": "video", "account": "acct_1", "body": shortened(body), "wire_fault": "drop", "error": {}}
    expected = eager(headers, facts, len(raw))
    kept = journal_headers(headers)
    entry = Entry(1.0, 2.0, "POST", expected["path"], b"a=1", kept, len(jsonio.dumps(kept)), len(raw), 200, 0.0015,
                  dict(facts))  # fmt: skip
    assert entry.account == "acct_1"
    assert entry.to_dict() == expected
    assert len(entry.encoded()) <= entry.size, "the memory store's byte budget counts at least what it holds"
    assert entry.to_dict() == expected and entry.account == "acct_1"  # again, from the encoded text


# -- pages ------------------------------------------------------------------------------------------------


def test_task_pages_and_counts(make_store: MakeStore) -> None:
    store = make_store()
    for n in range(7):
        store.put_task_once(task(f"t{n}", account="acct_a" if n % 3 else "acct_b"), None)
    ids = [f"t{n}" for n in range(7)]
    a = [i for n, i in enumerate(ids) if n % 3]
    assert (store.task_count(), store.task_count("acct_a"), store.task_count("nobody")) == (7, len(a), 0)
    assert [t.id for t in store.task_page()] == ids
    assert [t.id for t in store.task_page(newest_first=True, offset=2, limit=3)] == ids[::-1][2:5]
    assert [t.id for t in store.task_page("acct_a", offset=1, limit=2)] == a[1:3]
    assert [t.id for t in store.task_page("acct_a", newest_first=True, limit=10)] == a[::-1]
    assert store.task_page(offset=10) == [] and store.task_page(limit=0) == []
    store.evict_tasks(5.0, limit=2)
    assert store.task_count() == 5 and [t.id for t in store.task_page()] == ids[2:]
    store.reset("acct_a")
    assert store.task_count() == store.task_count("acct_b") == len([i for i in ids[2:] if i not in a])


def test_listing_by_status_and_the_ledger_page_the_same_as_whole() -> None:
    clock = VirtualClock()
    fake = Fake.open(Settings(task_seconds=10.0), clock=clock)

    async def submit(n: int, body: dict[str, Any], **kw: Any) -> None:
        for _ in range(n):
            await fake.submit("video", "acct_a", body, **kw)

    asyncio.run(submit(5, BODY))
    clock.advance(60)
    asyncio.run(submit(3, {**BODY, "prompt": "p [mock:fail]"}))
    clock.advance(60)
    asyncio.run(submit(4, BODY))
    every = ControlPlane(fake).tasks()[0]
    for status, want in (("SUCCESS", 5), ("FAILURE", 3), ("SUBMITTED", 4)):
        page, total = ControlPlane(fake).tasks(status=status, newest_first=True, offset=1, limit=2)
        assert total == want
        matching = [t for t in every[::-1] if t["view"]["status"] == status]
        assert page == matching[1:3]
    whole = ControlPlane(fake).ledger()
    assert whole["entries"] == ledger.summary(fake.store.tasks(), clock.now(), {}, None)["entries"]
    part = ControlPlane(fake).ledger(offset=3, limit=4)
    assert part["entries"] == whole["entries"][3:7]
    assert part["accounts"] == whole["accounts"] and part["total_spent"] == whole["total_spent"]
    assert ControlPlane(fake).ledger(limit=0)["entries"] == []


def test_eviction_goes_a_step_at_a_time(make_store: MakeStore) -> None:
    store = make_store()
    for n in range(25):
        store.put_task_once(task(f"t{n:02d}", created_at=float(n)), None)
    assert store.evict_tasks(20.0, limit=8) == 8
    assert store.evict_tasks(20.0, limit=8) == 8
    assert store.evict_tasks(20.0, limit=8) == 4
    assert [t.id for t in store.tasks()] == [f"t{n}" for n in range(20, 25)]


# -- one write per answer ------------------------------------------------------------------------------


@pytest.mark.e2e
def test_each_answer_is_whole_and_in_order_on_one_connection() -> None:
    """Pipelined requests, HEAD, a body sent after ``100 Continue``: each answer complete, in order."""
    with ServerProcess(["--task-seconds", "0"]) as server:
        port = int(server.base_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            body = json.dumps(BODY).encode()
            submit = (
                b"POST /v1/midjourney/generations/video HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            head = b"HEAD /v1/tasks/task_nope HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n"
            sock.sendall(submit + head + submit)
            data = b""
            while data.count(b"HTTP/1.1 ") < 3 or not data.endswith(b"}]}"):
                chunk = sock.recv(65536)
                assert chunk, data
                data += chunk
            parts = data.split(b"HTTP/1.1 ")[1:]
            assert [p[:3] for p in parts] == [b"200", b"404", b"200"]
            assert parts[1].endswith(b"\r\n\r\n"), "HEAD: the head alone"
            sock.sendall(submit.replace(b"Content-Type", b"Expect: 100-continue\r\nContent-Type", 1)[: -len(body)])
            assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(body)
            answer = b""
            while not answer.endswith(b"}]}"):
                answer += sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200 OK")


# -- shared settings across workers ----------------------------------------------------------------


def test_sqlite_workers_read_each_others_changes_in_their_next_turn(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    a, b = SQLiteStore(path), SQLiteStore(path)
    hot = a.hot()
    assert isinstance(hot, SQLiteHot)

    async def rules_seen() -> tuple[int, int]:
        await hot.refresh()
        first = len(hot.shared().rules)
        b.put_fault_rule(FaultRule("rule_1", Fault("error_500")))
        await hot.refresh()  # the same turn of the loop: the copy stands
        same_turn = len(hot.shared().rules)
        await asyncio.sleep(0)  # a later turn: read again
        await hot.refresh()
        return first, same_turn * 10 + len(hot.shared().rules)

    assert asyncio.run(rules_seen()) == (0, 1)
    b.set_clock_state(12.5, None)
    asyncio.run(hot.refresh())
    assert hot.shared().clock == (12.5, None)


def test_a_loop_never_reads_through_another_loops_snapshot(tmp_path: Path) -> None:
    """In-process transports share one store from threads of their own, each with its loop: a request
    on one loop that follows a change must see it, even while another loop's turn (and its read
    transaction) is still open. (Seen once in 20 runs of make test: a canned response added through
    one app was not yet seen by the other.)"""
    path = tmp_path / "state.db"
    a, b = SQLiteStore(path), SQLiteStore(path)
    hot = a.hot()
    assert isinstance(hot, SQLiteHot)
    seen: list[int] = []

    def other_loop() -> None:
        async def refreshed() -> int:
            await hot.refresh()
            return len(hot.shared().rules)

        seen.append(asyncio.run(refreshed()))

    async def change_while_this_turn_reads() -> None:
        await hot.refresh()  # this turn's read transaction is open now, and stays open until the turn ends
        b.put_fault_rule(FaultRule("rule_1", Fault("error_500")))  # another worker changes the rules
        reader = threading.Thread(target=other_loop)
        reader.start()
        reader.join()  # this turn is not over: its snapshot is still open

    asyncio.run(change_while_this_turn_reads())
    assert seen == [1]


def test_a_write_lock_held_elsewhere_is_tried_again_after_a_pause_not_at_every_turn(tmp_path: Path) -> None:
    """Writes that find the lock held wait ``RETRY`` seconds for their next try, however many writes come
    meanwhile (trying at every turn of the loop spent a worker's time on failed tries); once the lock is
    free, every queued write is made."""
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    hot = store.hot()
    assert isinstance(hot, SQLiteHot)
    other = sqlite3.connect(path, isolation_level=None)
    tries: list[float] = []
    commit = hot._commit

    def counted(*args: Any) -> None:
        tries.append(time.monotonic())
        commit(*args)

    hot._commit = counted  # type: ignore[method-assign,assignment]

    async def writes_while_locked() -> list[str | Overdraft]:
        other.execute("BEGIN IMMEDIATE")  # another worker writes
        pending: list[asyncio.Future[str | Overdraft]] = []
        started = time.monotonic()
        while time.monotonic() - started < 0.1:  # a write at every turn of the loop, for 0.1 s
            pending.append(asyncio.ensure_future(hot.put_task_once(task(f"task_{len(pending)}"), None)))
            await asyncio.sleep(0)
        locked = len(tries)
        other.execute("ROLLBACK")
        done = await asyncio.gather(*pending)
        assert 1 <= locked <= 0.1 / sqlite_hot.RETRY + 2, f"{locked} tries in 0.1 s"
        return done

    done = asyncio.run(writes_while_locked())
    assert len(done) > 50 and done == [f"task_{n}" for n in range(len(done))]
    assert store.get_task(f"task_{len(done) - 1}") is not None
    other.close()


def test_sqlite_journal_entries_queued_are_read(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "state.db")
    fake = Fake.open(Settings(), store=store)
    entry = Entry(1.0, 2.0, "GET", "/v1/tasks/x", b"", {}, 2, 0, 404, 0.001, {"account": "acct_a"})

    async def record() -> None:
        fake.append_entry(entry)

    asyncio.run(record())  # queued for the next transaction, which this loop never ran
    assert [e["path"] for e in store.journal()] == ["/v1/tasks/x"]
    assert SQLiteStore(tmp_path / "state.db").journal()[0]["status"] == 404  # and written for every worker


@pytest.mark.e2e
def test_redis_workers_hear_of_each_others_changes(redis_url: str) -> None:
    prefix = f"t{uuid.uuid4().hex[:12]}:"
    a, b = RedisStore(redis_url, prefix=prefix), RedisStore(redis_url, prefix=prefix)
    hot = a.hot()
    assert isinstance(hot, RedisHot)

    async def seen() -> list[int]:
        counts = []
        await hot.refresh()
        for _ in range(100):  # until the subscription is live (it connects in the background)
            if hot._subscribed_in is not None:
                break
            await asyncio.sleep(0.02)
        await hot.refresh()
        counts.append(len(hot.shared().rules))
        await asyncio.get_running_loop().run_in_executor(None, b.put_fault_rule, FaultRule("rule_1", Fault("never")))
        for _ in range(100):  # the message arrives, then the next request reads the copy again
            await asyncio.sleep(0.01)
            await hot.refresh()
            if hot.shared().rules:
                break
        counts.append(len(hot.shared().rules))
        return counts

    assert asyncio.run(seen()) == [0, 1]


# -- the asyncio Redis client -------------------------------------------------------------------------


def test_the_redis_client_reads_replies_split_anywhere_and_drops_a_connection_that_is_not_resp() -> None:
    replies: list[Any] = []
    lost: list[BaseException | None] = []
    protocol = resp._Protocol(replies.append, lost.append)
    wire = b"+OK\r\n:12\r\n$-1\r\n*-1\r\n*3\r\n$1\r\na\r\n-WRONGTYPE x \xff\r\n*0\r\n$3\r\na\r\n\r\n"
    for at in range(len(wire)):  # a byte at a time: every reply split at every point
        protocol.data_received(wire[at : at + 1])
    assert replies[:4] == [b"OK", 12, None, None] and replies[5] == b"a\r\n" and not lost
    assert replies[4][0] == b"a" and replies[4][2] == []
    wrong = replies[4][1]  # an error reply inside an array: a value, not a failed connection
    assert isinstance(wrong, ReplyError) and not isinstance(wrong, ConnectionError)
    assert str(wrong) == "WRONGTYPE x \ufffd"  # Redis's text, undecodable bytes replaced

    class Closing:
        closed = False

        def close(self) -> None:
            self.closed = True

    broken = resp._Protocol(replies.append, lost.append)
    broken.transport = transport = Closing()  # type: ignore[assignment]
    broken.data_received(b":1\r\n?what\r\n")
    assert replies[-1] == 1 and transport.closed  # what came before is answered; then the connection goes
    assert len(lost) == 1 and isinstance(lost[0], ConnectionError)


@pytest.mark.e2e
def test_the_redis_client_pipelines_and_fails_in_bounded_time(redis_url: str) -> None:
    async def run() -> None:
        client = Client(Options(redis_url, 0.5))
        key = f"t{uuid.uuid4().hex}"
        replies = await asyncio.gather(*(client.call("INCR", key) for _ in range(50)))
        assert sorted(replies) == list(range(1, 51))
        value, wrong, missing = await client.pipeline([["GET", key], ["HGET", key, "x"], ["GET", key + "-none"]])
        assert value == b"50" and missing is None
        assert isinstance(wrong, ReplyError) and str(wrong).startswith("WRONGTYPE")
        assert await client.script("return {KEYS[1], ARGV[1]}", [key], ["x"]) == [key.encode(), b"x"]
        client.close()
        assert await client.call("GET", key) == b"50"  # connected again by itself
        with socket.socket() as silent:  # a server that accepts and never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            port = silent.getsockname()[1]
            stuck = Client(Options(f"redis://127.0.0.1:{port}/0", 0.3))
            started = asyncio.get_running_loop().time()
            with pytest.raises(TimeoutError):
                await stuck.call("PING")
            assert asyncio.get_running_loop().time() - started < 1.0
        refused = Client(Options(f"redis://127.0.0.1:{port}/0", 0.3))
        with pytest.raises(OSError):
            await refused.call("PING")

    asyncio.run(run())
