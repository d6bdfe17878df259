"""``mockserver proxy``: forwarding, the checks both ways, the spend cap, the recording.

No test touches the network: the upstream is the fake itself, in-process (an
``httpx.ASGITransport``) or as a real server on a loopback port, and each
broken upstream is the fake with one answer rewritten (``tests/broken.py``'s
``RewriteJSON``) or a tiny Starlette app.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Scope

from mockserver import Settings, create_app
from mockserver.core.clock import VirtualClock
from mockserver.proxy.app import Proxy, create_proxy_app
from mockserver.proxy.checks import RULES, Contract
from mockserver.proxy.config import ProxyConfig
from mockserver.proxy.process import ProxyProcess
from mockserver.testing import ServerProcess, free_port

from ..broken import RewriteJSON
from ..helpers import blocking

TOKEN = "sk-proxy-test-7f3a9c1e5b2d"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VIDEO = "/v1/midjourney/generations/video"
FRAME = "https://example.com/cat.png"
UPSTREAM = "http://upstream.test"


def body(**fields: Any) -> dict[str, Any]:
    return {"prompt": "the cat turns its head", "image_urls": [FRAME], **fields}


@dataclass
class Rig:
    client: httpx.AsyncClient
    proxy: Proxy
    lines: list[str]

    def counts(self) -> dict[str, int]:
        return dict(self.proxy.divergences.counts)

    def confirmed(self) -> dict[str, int]:
        return dict(self.proxy.divergences.confirmed)


@asynccontextmanager
async def rig(upstream: ASGIApp, **config: Any) -> AsyncIterator[Rig]:
    """The proxy in-process, its upstream (and the result files) answered by ``upstream`` in-process."""
    lines: list[str] = []
    app = create_proxy_app(
        ProxyConfig(upstream=UPSTREAM, **{"max_paid_tasks": 10, **config}),
        transport=httpx.ASGITransport(app=upstream),
        media_transport=httpx.ASGITransport(app=upstream),
        emit=lines.append,
    )
    proxy: Proxy = app.state.proxy
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy.test", headers=AUTH) as client:
        yield Rig(client, proxy, lines)
    await proxy.aclose()
    lines.extend(proxy.report())


def fake(clock: VirtualClock | None = None, **settings: Any) -> Starlette:
    return create_app(
        Settings(**{"task_seconds": 0.0, "task_dialect": "mj", **settings}), clock=clock or VirtualClock()
    )


def run(coroutine: Awaitable[None]) -> None:
    asyncio.run(coroutine)  # type: ignore[arg-type]


async def submit(client: httpx.AsyncClient, payload: dict[str, Any]) -> str:
    answer = await client.post(VIDEO, json=payload)
    assert answer.status_code == 200, answer.text
    task_id: str = answer.json()["data"][0]["task_id"]
    return task_id


# -- answers pass unchanged -------------------------------------------------------------------


def test_answers_come_back_unchanged() -> None:
    clock = VirtualClock()
    upstream = fake(clock, task_seconds=10)

    async def scenario() -> None:
        direct = httpx.AsyncClient(transport=httpx.ASGITransport(app=upstream), base_url=UPSTREAM, headers=AUTH)
        async with rig(upstream) as r, direct:
            task_id = await submit(r.client, body(batch_size=2))
            for _ in range(4):
                through, straight = await r.client.get(f"/v1/tasks/{task_id}"), await direct.get(f"/v1/tasks/{task_id}")
                assert (through.status_code, through.content) == (straight.status_code, straight.content)
                assert through.headers["content-type"] == straight.headers["content-type"]
                clock.advance(4)
            assert through.json()["status"] == "SUCCESS"
            missing = await r.client.get("/v1/tasks/task_nope")
            assert (missing.status_code, missing.content) == (404, (await direct.get("/v1/tasks/task_nope")).content)
            assert r.counts() == {}
            listed = (await r.client.get("/__mock__/divergences")).json()
            assert listed == {"total": 0, "counts": {}, "divergences": [], "confirmed": {"total": 0, "counts": {}}}
        assert "mockserver proxy: no divergence from spec/openapi.yaml" in r.lines

    run(scenario())


def test_paths_outside_the_spec_stream_through() -> None:
    async def scenario() -> None:
        async with rig(fake()) as r:
            task_id = await submit(r.client, body())
            url = (await r.client.get(f"/v1/tasks/{task_id}")).json()["video_url"]
            clip = await r.client.get(httpx.URL(url).path, headers={"Range": "bytes=0-15"})
            assert clip.status_code == 206
            assert clip.content[4:8] == b"ftyp"
            head = await r.client.head(f"/v1/tasks/{task_id}")
            assert head.status_code == 200 and head.content == b""
            assert r.counts() == {}
            assert (await r.client.get("/__mock__/health")).json()["upstream"] == UPSTREAM
            assert (await r.client.get("/openapi.json")).json()["openapi"].startswith("3.")

    run(scenario())


# -- the spend cap ----------------------------------------------------------------------------


def test_by_default_no_paid_submission_is_forwarded() -> None:
    upstream = fake()

    async def scenario() -> None:
        async with rig(upstream, max_paid_tasks=0) as r:
            for path, payload in (
                (VIDEO, body()),
                ("/v1/midjourney/generations", {"prompt": "a red fox"}),
                ("/v1/midjourney/generations/imagine", {"prompt": "a red fox"}),
            ):
                answer = await r.client.post(path, json=payload)
                assert answer.status_code == 402
                error = answer.json()["error"]
                assert (error["type"], error["code"], error["param"]) == ("payment_required", 402, None)
                assert "--max-paid-tasks is 0" in error["message"]
                assert "--max-paid-tasks N" in error["message"]
            assert (await r.client.get("/v1/tasks/task_unknown")).status_code == 404  # free calls still go
            spend = (await r.client.get("/__mock__/spend")).json()
            assert (spend["tasks"], spend["refused_locally"], spend["credits"]) == (0, 3, 0)
        assert blocking(upstream.state.fake.store).tasks() == []
        assert any("spent 0 credit(s) (0.00 USD) on 0 paid task(s)" in line for line in r.lines)

    run(scenario())


def test_a_refused_submission_gives_its_slot_back_and_spend_is_counted() -> None:
    upstream = fake()

    async def scenario() -> None:
        async with rig(upstream, max_paid_tasks=2) as r:
            refused = await r.client.post(VIDEO, json=body(task_id="task_x"))
            assert refused.status_code == 400  # the upstream refused it: no task, the slot is free again
            await submit(r.client, body(batch_size=2, video_type="vid_1.1_i2v_720"))
            task_id = await submit(r.client, body(prompt="[mock:fail]"))
            assert (await r.client.post(VIDEO, json=body())).status_code == 402
            assert (await r.client.post(VIDEO, json=body(task_id="task_y"))).status_code == 402
            await r.client.get(f"/v1/tasks/{task_id}")  # FAILURE: refunded
            spend = (await r.client.get("/__mock__/spend")).json()
            assert spend["tasks"] == 2
            assert spend["by_price_key"]["midjourney@video-720p"]["credits"] == 8
            assert spend["by_price_key"]["midjourney@video"]["refunded"] == 2
            assert spend["credits"] == 8 and spend["usd"] == pytest.approx(0.8)
        assert len(blocking(upstream.state.fake.store).tasks()) == 2
        assert r.counts() == {"request.rule": 1}  # refused locally, for the budget: the upstream never saw it
        assert r.confirmed() == {"request.rule": 1}  # forwarded and refused upstream too: agreement
        assert any(line.endswith("not forwarded (--max-paid-tasks reached)") for line in r.lines)
        assert any("paid task 1 of 2 accepted" in line and "8 credit(s) (0.80 USD)" in line for line in r.lines)
        assert any("spent 8 credit(s) (0.80 USD) on 2 paid task(s)" in line for line in r.lines)

    run(scenario())


def test_an_unreachable_upstream_is_a_502_and_costs_no_slot() -> None:
    async def scenario() -> None:
        lines: list[str] = []
        config = ProxyConfig(upstream=f"http://127.0.0.1:{free_port()}", max_paid_tasks=1, timeout=5)
        app = create_proxy_app(config, emit=lines.append)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://p", headers=AUTH) as c:
            for _ in range(2):
                answer = await c.post(VIDEO, json=body())
                assert answer.status_code == 502
                assert answer.json()["error"]["type"] == "bad_gateway"
            assert app.state.proxy.cap.used == 0
            assert app.state.proxy.divergences.counts == {"upstream.unreachable": 2}
        await app.state.proxy.aclose()

    run(scenario())


# -- divergences ------------------------------------------------------------------------------

Change = Callable[[dict[str, Any], int], None]


def rewrite_polls(upstream: ASGIApp, change: Change) -> ASGIApp:
    """The upstream with each 200 poll answer changed; ``change`` is told the task's poll count."""
    polls: Counter[str] = Counter()

    def rewrite(scope: Scope, status: int, answer: Any) -> tuple[int, Any]:
        if status == 200 and isinstance(answer, dict):
            task_id = scope["path"].rsplit("/", 1)[-1]
            polls[task_id] += 1
            change(answer, polls[task_id])
        return status, answer

    return RewriteJSON(upstream, "/v1/tasks/", rewrite)


def one_clip_short(answer: dict[str, Any], n: int) -> None:
    if answer.get("status") == "SUCCESS":
        answer["video_urls"] = answer["video_urls"][:-1]


def one_item_short(answer: dict[str, Any], n: int) -> None:
    data = answer["data"]
    if data["status"] == "completed":
        data["result"]["videos"] = data["result"]["videos"][:-1]


def back_to_running(answer: dict[str, Any], n: int) -> None:
    if n >= 2:
        answer.update(status="IN_PROGRESS", progress="50%")
        answer.pop("video_url", None)
        answer.pop("video_urls", None)


def back_to_processing(answer: dict[str, Any], n: int) -> None:
    if n >= 2:
        answer["data"].update(status="processing", progress=50)
        answer["data"].pop("result", None)


def progress_in_words(answer: dict[str, Any], n: int) -> None:
    answer["progress"] = "lots"


def poll_503(upstream: ASGIApp) -> ASGIApp:
    error = {"error": {"message": "busy", "type": "server_error", "code": 503, "param": None}}
    return RewriteJSON(upstream, "/v1/tasks/", lambda scope, status, answer: (503, error))


def bad_task_id(upstream: ASGIApp) -> ASGIApp:
    def rewrite(scope: Scope, status: int, answer: Any) -> tuple[int, Any]:
        if status == 200:
            answer["data"][0]["task_id"] = "12345"
        return status, answer

    return RewriteJSON(upstream, VIDEO, rewrite)


def plain_text_errors(upstream: ASGIApp) -> ASGIApp:
    def rewrite(scope: Scope, status: int, answer: Any) -> tuple[int, Any]:
        if status >= 400 and isinstance(answer, dict) and "error" in answer:
            return status, str(answer["error"]["message"])
        return status, answer

    return RewriteJSON(upstream, "/v1/", rewrite)


def accepts_anything() -> ASGIApp:
    """An upstream that accepts every submission (what the fake would refuse included)."""

    async def accept(request: Request) -> Response:
        return JSONResponse({"code": 200, "data": [{"status": "submitted", "task_id": "task_" + "0" * 26}]})

    return Starlette(routes=[Route(VIDEO, accept, methods=["POST"])])


async def submit_and_poll_twice(client: httpx.AsyncClient) -> httpx.Response:
    task_id = await submit(client, body(batch_size=2))
    await client.get(f"/v1/tasks/{task_id}")
    return await client.get(f"/v1/tasks/{task_id}")


async def submit_only(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post(VIDEO, json=body(batch_size=2))


async def frame_and_task(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post(VIDEO, json=body(task_id="task_01"))


@dataclass(frozen=True)
class Variant:
    name: str
    upstream: Callable[[], ASGIApp]
    scenario: Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]
    rule: str


VARIANTS = [
    Variant(
        "video_urls one short", lambda: rewrite_polls(fake(), one_clip_short), submit_and_poll_twice, "task.clip_count"
    ),
    Variant(
        "result.videos one short",
        lambda: rewrite_polls(fake(task_dialect="unified"), one_item_short),
        submit_and_poll_twice,
        "task.clip_count",
    ),
    Variant(
        "SUCCESS then IN_PROGRESS",
        lambda: rewrite_polls(fake(), back_to_running),
        submit_and_poll_twice,
        "task.status_order",
    ),
    Variant(
        "completed then processing",
        lambda: rewrite_polls(fake(task_dialect="unified"), back_to_processing),
        submit_and_poll_twice,
        "task.status_order",
    ),
    Variant("a poll answered 503", lambda: poll_503(fake()), submit_and_poll_twice, "response.status"),
    Variant(
        "progress in words", lambda: rewrite_polls(fake(), progress_in_words), submit_and_poll_twice, "response.schema"
    ),
    Variant("a task id off the pattern", lambda: bad_task_id(fake()), submit_only, "response.schema"),
    Variant("errors as plain text", lambda: plain_text_errors(fake()), frame_and_task, "response.schema"),
    Variant("accepts frame and task together", accepts_anything, frame_and_task, "request.rule"),
]


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_a_broken_upstream_shows_as_a_divergence_and_passes_unchanged(variant: Variant) -> None:
    async def scenario() -> None:
        async with rig(variant.upstream()) as r:
            answer = await variant.scenario(r.client)
            assert answer.status_code != 502  # the answer is the upstream's, unchanged
            listed = (await r.client.get("/__mock__/divergences")).json()
        assert listed["counts"].get(variant.rule, 0) >= 1, listed
        found = [d for d in listed["divergences"] if d["rule"] == variant.rule]
        assert found[0]["expected"] and found[0]["seen"] and found[0]["replaced"] is False
        assert any(line.startswith(f"mockserver proxy: DIVERGENCE {variant.rule}: ") for line in r.lines)
        assert any(variant.rule in line for line in r.lines if "divergence(s) from spec/openapi.yaml" in line)

    run(scenario())


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_strict_replaces_a_divergent_answer_by_a_502_naming_the_rule(variant: Variant) -> None:
    async def scenario() -> None:
        async with rig(variant.upstream(), strict=True) as r:
            answer = await variant.scenario(r.client)
        assert answer.status_code == 502, answer.text
        error = answer.json()["error"]
        assert (error["type"], error["code"], error["param"]) == ("bad_gateway", 502, None)
        assert variant.rule in error["message"]
        assert variant.rule in error["rules"]

    run(scenario())


def test_strict_lets_conforming_answers_and_agreed_refusals_through() -> None:
    async def scenario() -> None:
        async with rig(fake(task_dialect="unified"), strict=True) as r:
            task_id = await submit(r.client, body(batch_size=4))
            task = (await r.client.get(f"/v1/tasks/{task_id}")).json()
            assert len(task["data"]["result"]["videos"]) == 4
            refused = await r.client.post(VIDEO, json=body(task_id="task_01"))
            assert refused.status_code == 400  # the upstream refused what the fake refuses: no 502
            assert (
                await r.client.post(VIDEO, content=b"{", headers={"content-type": "application/json"})
            ).status_code == 400
            assert (await r.client.get(f"/v1/tasks/{task_id}", headers={"Authorization": ""})).status_code == 401
        assert r.counts() == {}  # every refusal the upstream agreed with is confirmed, not a divergence
        assert set(r.confirmed()) == {"request.rule", "request.json", "request.auth"}
        assert not any("[answer replaced by 502]" in line for line in r.lines)

    run(scenario())


def test_request_rules_match_the_fake() -> None:
    contract = Contract()
    op, _ = contract.find("POST", VIDEO) or pytest.fail("no video operation")
    headers = {"authorization": "Bearer k", "content-type": "application/json"}
    cases = {
        b'{"prompt": "p", "image_urls": ["https://e.x/a.png"], "batch_size": 3}': "request.schema",
        b'{"prompt": "p"}': "request.rule",
        b'{"prompt": "", "image_urls": ["https://e.x/a.png"]}': "request.rule",
        b'{"prompt": "p", "image_urls": ["data:image/png;base64,AAAA"], "animate_mode": "auto"}': "request.rule",
        b"[1]": "request.json",
        b"": "request.json",
    }
    for raw, rule in cases.items():
        verdict = contract.check_request(op, headers, raw)
        assert [f.rule for f in verdict.findings] == [rule], raw
    good = contract.check_request(op, headers, b'{"prompt": "p", "task_id": "task_1", "batch_size": 4}')
    assert (good.findings, good.batch_size, good.price_key) == ([], 4, "midjourney@video")
    no_key = contract.check_request(op, {"content-type": "text/plain"}, b'{"prompt": "p"}')
    assert [f.rule for f in no_key.findings] == ["request.auth", "request.content_type", "request.rule"]
    assert set(RULES) >= {f.rule for f in no_key.findings}


# -- recording --------------------------------------------------------------------------------


def test_recording_keeps_tasks_results_and_refusals(tmp_path: Path) -> None:
    upstream = fake(task_dialect="unified", unified_url_shape="string")

    async def scenario() -> None:
        async with rig(upstream, record=str(tmp_path), record_media=True, max_paid_tasks=1) as r:
            task_id = await submit(r.client, body(batch_size=2, image_urls=["data:image/png;base64," + "A" * 4000]))
            assert (await r.client.get(f"/v1/tasks/{task_id}")).json()["data"]["status"] == "completed"
            assert (await r.client.post(VIDEO, json=body())).status_code == 402
            assert (await r.client.get("/v1/tasks/task_unknown")).status_code == 404
        recording = json.loads((tmp_path / f"{task_id}.json").read_text())
        assert recording["submission"]["body"]["image_urls"][0].startswith("data:image/png;base64,AAAA")
        assert "4022 chars, sha256 " in recording["submission"]["body"]["image_urls"][0]
        assert recording["submission"]["batch_size"] == 2
        (poll,) = recording["polls"]
        assert poll["status"] == 200 and 0 <= poll["t"] < 5
        assert recording["final"]["status"] == "completed" and recording["final"]["clips"] == 2
        assert len(recording["results"]) == 2
        for n, result in enumerate(recording["results"]):
            assert result["content_type"] == "video/mp4"
            assert bytes.fromhex(result["head"])[4:8] == b"ftyp"
            kept = tmp_path / result["file"]
            assert kept.name == f"{n}.mp4" and kept.stat().st_size == result["size"] > 1000
        refusals = sorted((tmp_path / "refusals").glob("*.json"))
        sources = sorted((json.loads(p.read_text())["status"], json.loads(p.read_text())["source"]) for p in refusals)
        assert sources == [(402, "proxy"), (404, "upstream")]
        assert not list(tmp_path.rglob("*.tmp"))

    run(scenario())


def test_results_are_probed_with_a_ranged_get_without_media(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(fake(), record=str(tmp_path)) as r:
            task_id = await submit(r.client, body())
            await r.client.get(f"/v1/tasks/{task_id}")
        (result,) = json.loads((tmp_path / f"{task_id}.json").read_text())["results"]
        assert result["status"] == 206 and result["size"] > 1000 and "file" not in result
        assert not (tmp_path / "media").exists()

    run(scenario())


def echoing_upstream() -> ASGIApp:
    """An upstream that echoes the caller's Authorization header in its answers."""

    async def submit(request: Request) -> Response:
        said = request.headers.get("authorization", "")
        return JSONResponse({"error": {"message": f"bad key {said}", "type": "x", "code": 401, "param": said}}, 401)

    async def poll(request: Request) -> Response:
        said = request.headers.get("authorization", "")
        return JSONResponse({"id": "t", "action": "VIDEO", "status": f"DONE {said}", "progress": "1%"})

    return Starlette(routes=[Route(VIDEO, submit, methods=["POST"]), Route("/v1/tasks/{task_id}", poll)])


def test_the_key_is_never_written_or_logged(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with rig(echoing_upstream(), record=str(tmp_path)) as r:
            assert (await r.client.post(VIDEO, json=body(prompt=f"my key is {TOKEN}"))).status_code == 401
            answer = await r.client.get("/v1/tasks/task_1")
            assert TOKEN in answer.text  # the client's own answer is left as the upstream sent it
            listed = (await r.client.get("/__mock__/divergences")).text
        assert TOKEN not in listed
        assert listed.count("[redacted]") >= 1
        for path in tmp_path.rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), path
        assert not any(TOKEN in line for line in r.lines)

    run(scenario())


@pytest.mark.parametrize("key", ["q7", "k9z", "abcde"])
def test_a_short_key_is_scrubbed_wherever_it_stands_alone(tmp_path: Path, key: str) -> None:
    """Keys under 6 characters: every stand-alone occurrence is replaced, in files, lines and divergences."""

    async def scenario() -> None:
        async with rig(echoing_upstream(), record=str(tmp_path)) as r:
            r.client.headers["Authorization"] = f"Bearer {key}"
            assert (await r.client.post(VIDEO, json=body(prompt=f"key {key}; url /x/{key}/y"))).status_code == 401
            listed = (await r.client.get("/__mock__/divergences")).text
        alone = re.compile(rf"(?<![A-Za-z0-9]){re.escape(key)}(?![A-Za-z0-9])")
        written = [p.read_text() for p in tmp_path.rglob("*") if p.is_file()]
        assert written, "the refusal was recorded"
        for text in [*written, listed, *r.lines]:
            assert not alone.search(text), text
        assert any("Bearer [redacted]" in text for text in written)

    run(scenario())


# -- the proxy as a process -------------------------------------------------------------------


def wait_final(client: httpx.Client, task_id: str, *, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task: dict[str, Any] = client.get(f"/v1/tasks/{task_id}").json()
        if task["data"]["status"] in ("completed", "failed", "cancelled"):
            return task
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish within {timeout} s")


@pytest.mark.e2e
def test_e2e_proxy_process_records_and_never_writes_the_key(tmp_path: Path) -> None:
    token = f"sk-live-{uuid.uuid4().hex}"
    record = tmp_path / "recording"
    upstream = ServerProcess(
        ["--task-seconds", "1", "--task-dialect", "unified", "--unified-url-shape", "string"],
        log=tmp_path / "upstream.log",
    )
    with upstream:
        proxy = ProxyProcess(
            ["--upstream", upstream.base_url, "--max-paid-tasks", "2", "--record", str(record), "--record-media"],
            log=tmp_path / "proxy.log",
        )
        with (
            proxy,
            httpx.Client(base_url=proxy.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as c,
        ):
            submitted = c.post(VIDEO, json=body(batch_size=2))
            assert submitted.status_code == 200, submitted.text
            task_id = submitted.json()["data"][0]["task_id"]
            task = wait_final(c, task_id)
            videos = task["data"]["result"]["videos"]
            assert len(videos) == 2 and all(isinstance(v["url"], str) for v in videos)
            assert videos[0]["url"].startswith(upstream.base_url)  # result URLs are the upstream's, unchanged
            assert c.post(VIDEO, json=body(task_id="task_01")).status_code == 400
            listed = c.get("/__mock__/divergences").json()
            assert (listed["counts"], listed["confirmed"]["counts"]) == ({}, {"request.rule": 1})
            assert c.get("/__mock__/spend").json()["tasks"] == 1
        output = proxy.stop()
    assert "mockserver proxy: no divergence from spec/openapi.yaml; 1 refusal(s) the upstream confirmed" in output
    assert "spent 4 credit(s) (0.40 USD) on 1 paid task(s) (--max-paid-tasks 2)" in output
    assert "DIVERGENCE" not in output
    recording = json.loads((record / f"{task_id}.json").read_text())
    statuses = [p["body"]["data"]["status"] for p in recording["polls"]]
    assert statuses[-1] == "completed" and "processing" in statuses
    assert [r["content_type"] for r in recording["results"]] == ["video/mp4", "video/mp4"]
    assert all((record / r["file"]).stat().st_size == r["size"] for r in recording["results"])
    assert len(list((record / "refusals").glob("*.json"))) == 1
    written = [p for p in record.rglob("*") if p.is_file()]
    assert len(written) == 4  # the task, two clips, one refusal
    for path in [*written, tmp_path / "proxy.log"]:
        assert token.encode() not in path.read_bytes(), path


@pytest.mark.e2e
def test_e2e_the_cap_holds_under_32_racing_clients(tmp_path: Path) -> None:
    with ServerProcess(["--task-seconds", "0"]) as upstream:
        proxy = ProxyProcess(["--upstream", upstream.base_url, "--max-paid-tasks", "3"], log=tmp_path / "proxy.log")
        with proxy:
            barrier = threading.Barrier(32)
            statuses: list[int] = []
            lock = threading.Lock()

            def client() -> None:
                with httpx.Client(base_url=proxy.base_url, headers=AUTH, timeout=30) as c:
                    barrier.wait(timeout=30)
                    status = c.post(VIDEO, json=body()).status_code
                with lock:
                    statuses.append(status)

            threads = [threading.Thread(target=client) for _ in range(32)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            assert Counter(statuses) == {200: 3, 402: 29}
            tasks = httpx.get(f"{upstream.base_url}/__mock__/tasks", timeout=10).json()
            assert tasks["total"] == 3
        output = proxy.stop()
    assert "on 3 paid task(s) (--max-paid-tasks 3)" in output and "29 paid submission(s) refused locally" in output


class ThreadServer:
    """An ASGI app under uvicorn in a thread of this process, on a free loopback port."""

    def __init__(self, app: ASGIApp) -> None:
        self.port = free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @contextmanager
    def running(self) -> Iterator[ThreadServer]:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert time.monotonic() < deadline, "the upstream did not start"
            time.sleep(0.02)
        try:
            yield self
        finally:
            self.server.should_exit = True
            self.thread.join(timeout=15)


@pytest.mark.e2e
def test_e2e_strict_proxy_process_answers_502_for_a_broken_upstream(tmp_path: Path) -> None:
    broken = rewrite_polls(create_app(Settings(task_seconds=0, task_dialect="mj")), one_clip_short)
    with ThreadServer(broken).running() as upstream:
        proxy = ProxyProcess(
            ["--upstream", upstream.base_url, "--max-paid-tasks", "1", "--strict"], log=tmp_path / "proxy.log"
        )
        with proxy, httpx.Client(base_url=proxy.base_url, headers=AUTH, timeout=10) as c:
            task_id = c.post(VIDEO, json=body(batch_size=2)).json()["data"][0]["task_id"]
            answer = c.get(f"/v1/tasks/{task_id}")
            assert answer.status_code == 502
            assert answer.json()["error"]["rules"] == ["task.clip_count"]
            assert c.get("/__mock__/divergences").json()["counts"] == {"task.clip_count": 1}
        output = proxy.stop()
    assert "DIVERGENCE task.clip_count: GET /v1/tasks/" in output
    assert "seen: 1 URL(s) in video_urls [answer replaced by 502]" in output
    assert "1 divergence(s) from spec/openapi.yaml: task.clip_count 1" in output


def test_a_client_polling_both_task_endpoints_raises_no_false_alarm() -> None:
    """Statuses are ordered on one scale across the two dialects: SUCCESS then completed (and
    FAILURE then failed) is the same final outcome, not a status moving backwards."""
    clock = VirtualClock()
    upstream = fake(clock, task_seconds=8, task_dialect="unified")

    async def scenario() -> None:
        async with rig(upstream, strict=True) as r:
            done = await submit(r.client, body(batch_size=2))
            refused = await r.client.post(VIDEO, json=body(), headers={"X-Mock-Scenario": "fail"})
            failed = refused.json()["data"][0]["task_id"]
            for _ in range(6):
                for task_id in (done, failed):
                    for path in (f"/v1/midjourney/{task_id}", f"/v1/tasks/{task_id}"):
                        answer = await r.client.get(path)
                        assert answer.status_code == 200, (path, answer.text)
                clock.advance(2)
            assert (await r.client.get(f"/v1/tasks/{done}")).json()["data"]["status"] == "completed"
            assert (await r.client.get(f"/v1/midjourney/{done}")).json()["status"] == "SUCCESS"
            assert (await r.client.get(f"/v1/tasks/{failed}")).json()["data"]["status"] == "failed"
            assert (await r.client.get(f"/v1/midjourney/{failed}")).json()["status"] == "FAILURE"
            assert r.counts() == {}

    run(scenario())
