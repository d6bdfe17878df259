"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import inspect
import struct
import threading
import zlib
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
from starlette.applications import Starlette

from mockserver.core.clock import VirtualClock
from mockserver.service import Fake
from mockserver.store import MemoryStore
from mockserver.store.redis import RedisStore
from mockserver.store.sqlite import SQLiteStore


def tiny_png(width: int = 16, height: int = 16) -> bytes:
    """A valid PNG of grey pixels, made here."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VIDEO = "/v1/midjourney/generations/video"
IMAGINE = "/v1/midjourney/generations"
FRAME = "https://example.com/cat.png"
BODY = {"prompt": "a cat", "image_urls": [FRAME]}


@dataclass
class Api:
    """An httpx client wired in-process to one fake, with its clock and service."""

    client: httpx.Client
    app: Starlette
    clock: VirtualClock

    @property
    def fake(self) -> Fake:
        fake: Fake = self.app.state.fake
        return fake

    def task_count(self) -> int:
        return len(blocking(self.fake.store).tasks())

    def submit(self, body: Any, **kwargs: Any) -> httpx.Response:
        return self.client.post(VIDEO, json=body, **kwargs)

    def submit_ok(self, **fields: Any) -> str:
        body = {"prompt": "a cat", "image_urls": [FRAME], **fields}
        response = self.submit(body)
        assert response.status_code == 200, response.text
        task_id: str = response.json()["data"][0]["task_id"]
        return task_id

    def imagine_ok(self, prompt: str = "a red fox", **fields: Any) -> str:
        response = self.client.post(IMAGINE, json={"prompt": prompt, **fields})
        assert response.status_code == 200, response.text
        task_id: str = response.json()["data"][0]["task_id"]
        return task_id

    def poll(self, task_id: str, path: str = "/v1/midjourney/") -> dict[str, Any]:
        response = self.client.get(path + task_id)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def finish(self, task_id: str) -> dict[str, Any]:
        self.clock.advance(self.fake.settings.task_seconds + 1)
        return self.poll(task_id)


_LOOP: asyncio.AbstractEventLoop | None = None
_LOOP_LOCK = threading.Lock()


def run(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a store's coroutine to its end on the tests' own event loop (one thread for the session),
    from any thread: how a test makes the calls a request would make, one after the other."""
    global _LOOP
    with _LOOP_LOCK:
        if _LOOP is None:
            _LOOP = asyncio.new_event_loop()
            threading.Thread(target=_LOOP.run_forever, name="tests-store-loop", daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coroutine, _LOOP).result()


def at_once(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never waits (the memory store's) to its end, on the caller's thread."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise AssertionError("the coroutine waited: run it on an event loop (run)")


class Blocking:
    """A store whose coroutines are called as plain functions (``run``): the store's other names as
    they are. For tests that drive a store step by step; ``.store`` is the store itself."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.runs = at_once if isinstance(store, MemoryStore) else run  # memory: on the caller's thread, as the server

    def __getattr__(self, name: str) -> Any:
        value = getattr(self.store, name)
        if not inspect.iscoroutinefunction(value):
            return value
        runs = self.runs

        def call(*args: Any, **kwargs: Any) -> Any:
            return runs(value(*args, **kwargs))

        return call


def blocking(store: Any) -> Any:
    """``Blocking(store)``, typed loosely: the tests call its methods as the protocol names them."""
    return store if isinstance(store, Blocking) else Blocking(store)


def twin(store: Any) -> Any:
    """A second connection to the same state, as another worker has (the memory store is one process);
    blocking when ``store`` is."""
    inner = store.store if isinstance(store, Blocking) else store
    if isinstance(inner, SQLiteStore):
        other: Any = SQLiteStore(inner.path)
    elif isinstance(inner, RedisStore):
        other = RedisStore(inner.url, prefix=inner.p)
    else:
        return store
    return Blocking(other) if isinstance(store, Blocking) else other


def assert_refused(response: httpx.Response, status: int, param: str | None, *words: str) -> dict[str, Any]:
    """The provider's error body, with the status, the field and the words of the rule."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "code", "param"}, error
    assert error["code"] == status
    assert error["param"] == param, error
    for word in words:
        assert word in error["message"], (word, error["message"])
    result: dict[str, Any] = error
    return result
