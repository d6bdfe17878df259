"""The Redis hot store and its asyncio client (``store/redis/hot.py``, ``store/redis/client.py``):
workers hear of each other's changes; replies split anywhere; pipelining in bounded time."""

from __future__ import annotations

import asyncio
import socket
import uuid
from typing import Any

import pytest

from mockserver.core.faults import Fault, FaultRule
from mockserver.store.redis import RedisHot, RedisStore
from mockserver.store.redis import client as resp
from mockserver.store.redis.client import Client, Options, ReplyError

BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"]}


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
