"""``mockserver proxy``: upstream answers are read with bounded memory.

An API answer is relayed up to ``--max-answer-bytes`` (decoded: a gzip bomb is
a 502 in the provider's error body, never a 500 or a MemoryError); anything
else (result files) streams through; ``--record-media`` writes files in chunks
up to ``--max-media-bytes`` and skips longer ones. ``httpx.ASGITransport``
collects a whole answer before returning it, so the large upstreams here go
through :class:`StreamingASGI`, and the proxy's answer is counted as it is sent
(:func:`call`) rather than collected.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from mockserver.core.errors import BAD_GATEWAY
from mockserver.proxy.app import Proxy, create_proxy_app
from mockserver.proxy.config import MiB, ProxyConfig, byte_count

from .test_proxy import AUTH, UPSTREAM, VIDEO, body, fake, rig, run, submit

CHUNK = 64 * 1024


class _Body(httpx.AsyncByteStream):
    """The body messages of a running ASGI app, as they are sent."""

    def __init__(self, queue: asyncio.Queue[Message], task: asyncio.Task[None]) -> None:
        self.queue, self.task = queue, task

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            message = await self.queue.get()
            if message.get("body"):
                yield message["body"]
            if not message.get("more_body"):
                return

    async def aclose(self) -> None:
        self.task.cancel()


class StreamingASGI(httpx.AsyncBaseTransport):
    """An ``httpx.ASGITransport`` that streams the answer's body instead of collecting it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=4)
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "server": (request.url.host, request.url.port),
        }
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()
            sent = True
            return {"type": "http.request", "body": content, "more_body": False}

        async def serve() -> None:
            await self.app(scope, receive, queue.put)

        task = asyncio.get_running_loop().create_task(serve())
        start = await queue.get()
        return httpx.Response(start["status"], headers=start.get("headers", []), stream=_Body(queue, task))


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    size: int
    content: bytes  # the first MiB at most


async def call(app: ASGIApp, path: str, method: str = "GET") -> Answer:
    """Send one request to ``app``, counting the answer's bytes as they come (none is collected past 1 MiB)."""
    answer = Answer(0, {}, 0, b"")
    done = False

    async def receive() -> Message:
        nonlocal done
        if done:
            await asyncio.Event().wait()
        done = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            answer.size += len(chunk)
            if len(answer.content) < MiB:
                answer.content += chunk[: MiB - len(answer.content)]

    headers = [(b"authorization", AUTH["Authorization"].encode()), (b"host", b"proxy.test")]
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b""}
    await app({**scope, "headers": headers, "http_version": "1.1", "scheme": "http"}, receive, send)
    return answer


@contextmanager
def peak_memory() -> Iterator[list[int]]:
    """The peak of traced Python allocations inside the block, in bytes (``[peak]`` once it ends)."""
    seen: list[int] = []
    tracemalloc.start()
    try:
        yield seen
    finally:
        seen.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


async def zeros(size: int) -> AsyncIterator[bytes]:
    """``size`` zero bytes, generated a chunk at a time."""
    for start in range(0, size, CHUNK):
        yield bytes(min(CHUNK, size - start))


def upstream_of(handler: Callable[[Request], Awaitable[Response]]) -> Starlette:
    return Starlette(routes=[Route("/{path:path}", handler, methods=["GET", "POST"])])


def assert_bad_gateway(answer: httpx.Response, *words: str) -> None:
    assert answer.status_code == 502, answer.text[:300]
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == (BAD_GATEWAY, 502)
    for word in words:
        assert word in error["message"]


# -- API answers: relayed up to --max-answer-bytes --------------------------------------------


def test_a_json_answer_over_the_limit_is_a_502_naming_the_flag() -> None:
    async def task(request: Request) -> Response:
        return JSONResponse({"code": 200, "data": {"status": "processing", "padding": "x" * 300_000}})

    async def scenario() -> None:
        async with rig(upstream_of(task), max_answer_bytes=100_000) as r:
            answer = await r.client.get("/v1/tasks/task_big")
            assert_bad_gateway(answer, "--max-answer-bytes", "100000 bytes", "/v1/tasks/task_big")
        assert any("--max-answer-bytes" in line for line in r.lines)

    run(scenario())


def test_a_json_answer_within_the_limit_passes_unchanged() -> None:
    async def scenario() -> None:
        async with rig(fake(), max_answer_bytes=64 * 1024) as r:
            task_id = await submit(r.client, body())
            through = await r.client.get(f"/v1/tasks/{task_id}")
            assert through.status_code == 200 and task_id in through.text
            assert int(through.headers["content-length"]) == len(through.content)

    run(scenario())


def test_a_gzipped_answer_is_decoded_and_relayed() -> None:
    payload = {"code": 200, "data": {"status": "processing", "task_id": "task_gz", "note": "y" * 5000}}

    async def task(request: Request) -> Response:
        packed = gzip.compress(json.dumps(payload).encode())
        return Response(packed, headers={"content-type": "application/json", "content-encoding": "gzip"})

    async def scenario() -> None:
        async with rig(upstream_of(task), max_answer_bytes=64 * 1024) as r:
            answer = await r.client.get("/v1/tasks/task_gz")
            assert answer.status_code == 200 and answer.json() == payload
            assert "content-encoding" not in answer.headers

    run(scenario())


def test_a_gzip_bomb_is_a_502_in_the_providers_error_body_with_memory_bounded() -> None:
    bomb = gzip.compress(bytes(100 * MiB), compresslevel=9)

    async def task(request: Request) -> Response:
        packed = b"not gzip at all" if request.headers.get("x-garble") else bomb
        return Response(packed, headers={"content-type": "application/json", "content-encoding": "gzip"})

    async def scenario() -> None:
        async with rig(upstream_of(task), max_answer_bytes=MiB) as r:
            with peak_memory() as peak:
                answer = await r.client.get("/v1/tasks/task_bomb")
            assert_bad_gateway(answer, "--max-answer-bytes")
            garbled = await r.client.get("/v1/tasks/task_bomb", headers={"x-garble": "1"})
        assert peak[0] < 16 * MiB, f"peak {peak[0] / MiB:.1f} MiB"
        assert_bad_gateway(garbled, "could not be decoded")

    run(scenario())


def test_a_paid_submission_answered_too_long_leaves_its_slot_uncertain() -> None:
    async def submission(request: Request) -> Response:
        return StreamingResponse(zeros(8 * MiB), media_type="application/json")

    async def scenario() -> None:
        app = create_proxy_app(
            ProxyConfig(upstream=UPSTREAM, max_paid_tasks=1, max_answer_bytes=MiB),
            transport=StreamingASGI(upstream_of(submission)),
            emit=lambda line: None,
        )
        proxy: Proxy = app.state.proxy
        with peak_memory() as peak:
            answer = await call(app, VIDEO, "POST")
        await proxy.aclose()
        assert answer.status == 502 and b"--max-answer-bytes" in answer.content
        assert proxy.cap.used == 1 and proxy.cap.tasks == 0  # a task may exist: its slot stays taken
        assert peak[0] < 16 * MiB, f"peak {peak[0] / MiB:.1f} MiB"

    run(scenario())


# -- result files: streamed through, recorded in chunks up to --max-media-bytes ----------------


def test_a_large_media_answer_streams_through_with_memory_bounded() -> None:
    size = 200 * MiB

    async def clip(request: Request) -> Response:
        return StreamingResponse(zeros(size), media_type="video/mp4", headers={"content-length": str(size)})

    async def scenario() -> None:
        app = create_proxy_app(
            ProxyConfig(upstream=UPSTREAM, max_answer_bytes=MiB),
            transport=StreamingASGI(upstream_of(clip)),
            emit=lambda line: None,
        )
        with peak_memory() as peak:
            answer = await call(app, "/files/clip.mp4")
        await app.state.proxy.aclose()
        assert (answer.status, answer.size, answer.headers["content-type"]) == (200, size, "video/mp4")
        assert peak[0] < 16 * MiB, f"peak {peak[0] / MiB:.1f} MiB"

    run(scenario())


def media_rig(tmp_path: Path, size: int, limit: int) -> tuple[Starlette, Proxy]:
    """A proxy recording with media whose API is the fake and whose result files are ``size`` zeros."""

    async def clip(request: Request) -> Response:
        return StreamingResponse(zeros(size), media_type="video/mp4")

    config = ProxyConfig(
        upstream=UPSTREAM, max_paid_tasks=1, record=str(tmp_path), record_media=True, max_media_bytes=limit
    )
    app = create_proxy_app(
        config,
        transport=httpx.ASGITransport(app=fake()),
        media_transport=StreamingASGI(upstream_of(clip)),
        emit=lambda line: None,
    )
    return app, app.state.proxy


async def record_one(app: Starlette, proxy: Proxy) -> str:
    """Submit one task through ``app``, poll it to its end and let the result probe finish."""
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy.test", headers=AUTH)
    async with client:
        task_id = await submit(client, body())
        assert (await client.get(f"/v1/tasks/{task_id}")).status_code == 200
    await proxy.aclose(timeout=30)
    return task_id


@pytest.mark.parametrize(("size", "limit", "kept"), [(48 * MiB, 64 * MiB, True), (48 * MiB, 4 * MiB, False)])
def test_record_media_writes_in_chunks_and_skips_a_file_over_the_limit(
    tmp_path: Path, size: int, limit: int, kept: bool
) -> None:
    app, proxy = media_rig(tmp_path, size, limit)

    async def scenario() -> None:
        with peak_memory() as peak:
            task_id = await record_one(app, proxy)
        assert peak[0] < 24 * MiB, f"peak {peak[0] / MiB:.1f} MiB"
        (result,) = json.loads((tmp_path / f"{task_id}.json").read_text())["results"]
        assert result["status"] == 200 and result["head"] == "00" * 16
        if kept:
            assert result["size"] == size == (tmp_path / result["file"]).stat().st_size
        else:
            assert "file" not in result and "--max-media-bytes" in result["skipped"]
            assert not [p for p in (tmp_path / "media").rglob("*") if p.is_file()]

    run(scenario())


def test_sizes_on_the_command_line() -> None:
    assert [byte_count(t) for t in ("1024", "16MiB", "512k", "2G")] == [1024, 16 * MiB, 512 * 1024, 2048 * MiB]
    with pytest.raises(argparse.ArgumentTypeError):
        byte_count("lots")
    with pytest.raises(ValueError, match="--max-answer-bytes"):
        ProxyConfig(max_answer_bytes=0).validated()
