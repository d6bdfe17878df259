"""The Redis store (``store/redis``) and its asyncio client (``client.py``): workers hear of each other's
changes; journal entries queued on one loop are read on another; a failed replace leaves no staging keys;
replies split anywhere; pipelining in bounded time."""

from __future__ import annotations

import asyncio
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from mockserver.core.faults import Fault, FaultRule
from mockserver.core.journal import Entry
from mockserver.core.records import TaskRecord
from mockserver.store.base import StateImage
from mockserver.store.redis import RedisStore
from mockserver.store.redis import client as resp
from mockserver.store.redis.client import Client, Options, ReplyError

from ..helpers import blocking, run


def new_store(redis_url: str) -> RedisStore:
    return RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:12]}:")


def task(task_id: str, **changes: Any) -> TaskRecord:
    fields: dict[str, Any] = {
        "id": task_id, "account": "acct_a", "action": "VIDEO", "created_at": 1.0, "duration": 8.0, "prompt": "p",
        "mode": "FAST", "clips": 2, "price_key": "midjourney@video", "quantity": 2, "unit_price": 2.0,
        "video_type": "vid_1.1_i2v_480",
    }  # fmt: skip
    return TaskRecord(**{**fields, **changes})


def entry(path: str) -> Entry:
    return Entry(1.0, 2.0, "GET", path, b"", {}, 2, 0, 200, 0.001, {"account": "acct_a"})


@pytest.fixture
def app_loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop in a thread of its own, as a server's (or an in-process transport's) is."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def test_redis_workers_hear_of_each_others_changes(redis_url: str) -> None:
    a = new_store(redis_url)
    b = RedisStore(redis_url, prefix=a.p)  # another worker: a change it makes is announced

    async def seen() -> list[int]:
        counts = []
        await a.refresh()
        for _ in range(100):  # until the subscription is live (it connects in the background)
            if a.shared_copy.live:
                break
            await asyncio.sleep(0.02)
        await a.refresh()
        counts.append(len(a.shared().rules))
        await asyncio.to_thread(run, b.put_fault_rule(FaultRule("rule_1", Fault("never"))))  # on another loop
        for _ in range(100):  # the message arrives, then the next request reads the copy again
            await asyncio.sleep(0.01)
            await a.refresh()
            if a.shared().rules:
                break
        counts.append(len(a.shared().rules))
        await b.set_clock_state(5.0, None)  # this loop's own client of b's
        await a.refresh()
        return [*counts, int(a.shared().clock[0] == 5.0)]

    assert asyncio.run(seen()) == [0, 1, 1]


def test_journal_entries_queued_on_one_loop_are_written_before_another_reads_them(
    redis_url: str, app_loop: asyncio.AbstractEventLoop
) -> None:
    store = new_store(redis_url)

    async def requests(count: int, rest: float) -> None:
        for n in range(count):
            store.append_entry(entry(f"/r{n}"))
            await store.get_task("task_x")  # a request's round trip
        await asyncio.sleep(rest)  # around the queue's delay: queued, being written, or written

    for rest in (0.0, 0.019, 0.021, 0.03):
        blocking(store).reset()
        asyncio.run_coroutine_threadsafe(requests(20, rest), app_loop).result()
        assert [e["path"] for e in blocking(store).journal()] == [f"/r{n}" for n in range(20)], rest


def test_a_failed_replace_leaves_the_old_state_and_no_staging_keys(redis_url: str) -> None:
    store = blocking(new_store(redis_url))
    store.replace_state(StateImage(tasks=[task("task_old")]))

    class Poisoned(TaskRecord):
        def to_json(self) -> str:
            raise RuntimeError("injected")

    poisoned = Poisoned(**{name: getattr(task("task_bad"), name) for name in TaskRecord.__dataclass_fields__})
    with pytest.raises(RuntimeError, match="injected"):
        store.replace_state(StateImage(tasks=[task("task_new"), poisoned]))
    assert [t.id for t in store.tasks()] == ["task_old"]
    assert not [key for key in run(store.store.link.scan(store.p + "*")) if b"~replace:" in key]


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
