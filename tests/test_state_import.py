"""PUT /__mock__/state: a bad document is refused whole (400 naming the field), the state untouched."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mockserver import Settings, create_app
from mockserver.core.clock import VirtualClock

Tamper = Callable[[dict[str, Any]], None]
PNG = (Path(__file__).resolve().parent.parent / "mockserver" / "assets" / "grid.png").read_bytes()


def _task(n: int) -> Tamper:
    return lambda d: d["tasks"][n].update(clips=2_000_000)


CASES: list[tuple[str, Tamper, str]] = [
    ("clips", _task(3), "tasks[3].clips"),
    ("created_at", lambda d: d["tasks"][0].update(created_at=1e308), "tasks[0].created_at"),
    ("negative", lambda d: d["tasks"][1].update(created_at=-1.7e308), "tasks[1].created_at"),
    ("clock", lambda d: d["clock"].update(now=1e308), "clock.now"),
    ("aspect", lambda d: d["tasks"][2]["params"].update(aspect="7:5"), "tasks[2].params.aspect"),
    ("balance", lambda d: d["balances"].update(acct_0000000000000000=1e16), "balances.acct_0000000000000000"),
    ("fired", lambda d: d["fault_rules"][0].update(fired=10**20), "fault_rules[0].fired"),
    ("probability", lambda d: d["fault_rules"][0].update(probability=2), "fault_rules[0].probability"),
    ("times", lambda d: d["fault_rules"][0].update(times=0), "fault_rules[0].times"),
    ("endpoint", lambda d: d["fault_rules"][0].update(endpoint="nowhere"), "fault_rules[0].endpoint"),
    ("bare html", lambda d: d["uploads"].append(_bare("text/html")), "uploads[1].content_type"),
    ("polls", lambda d: d["tasks"][4].update(polls=2**70), "tasks[4].polls"),
    (
        "html",
        lambda d: d["uploads"].append(_upload(b"<html><script>1</script></html>", "text/html")),
        "uploads[1].data",
    ),
]


def _upload(data: bytes, content_type: str) -> dict[str, Any]:
    meta = {"id": "upl_01HTML", "account": "acct_0000000000000000", "filename": "x.png", "size": len(data)}
    return {**meta, "content_type": content_type, "created_at": 1.0e9, "data": base64.b64encode(data).decode()}


def _bare(content_type: str) -> dict[str, Any]:
    """An upload exported without its bytes."""
    return {k: v for k, v in _upload(b"", content_type).items() if k != "data"}


async def _exported(client: httpx.AsyncClient) -> dict[str, Any]:
    """Five tasks, one upload and one rule, exported with the upload's bytes."""
    for _ in range(5):
        assert (await client.post("/__mock__/tasks", json={"token": "t", "status": "SUCCESS"})).status_code == 200
    rule = {"scenario": "error_500", "endpoint": "poll", "times": 3}
    assert (await client.post("/__mock__/scenarios", json=rule)).status_code == 200
    files = {"file": ("a.png", PNG, "image/png")}
    await client.post("/v1/uploads/images", files=files, headers={"Authorization": "Bearer t"})
    state: dict[str, Any] = (await client.get("/__mock__/state", params={"upload_data": "true"})).json()
    return state


async def _round_trip(settings: Settings, tamper: Tamper) -> tuple[httpx.Response, list[str], list[str]]:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
        state = await _exported(client)
        before = [t["id"] for t in state["tasks"]]
        tamper(state)
        answer = await client.put("/__mock__/state", json=state)
        listing = (await client.get("/__mock__/tasks")).json()["tasks"]
        return answer, before, [t["record"]["id"] for t in listing]


def _stores(tmp_path: Path) -> list[Settings]:
    return [Settings(), Settings(state="sqlite:///" + str(tmp_path / "s.db"))]


@pytest.mark.parametrize("store", ["memory", "sqlite"])
@pytest.mark.parametrize(("name", "tamper", "field"), CASES, ids=[c[0] for c in CASES])
def test_a_bad_document_is_refused_whole(tmp_path: Path, store: str, name: str, tamper: Tamper, field: str) -> None:
    settings = _stores(tmp_path)[store == "sqlite"]
    answer, before, after = asyncio.run(_round_trip(settings, tamper))
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["param"] == field and error["code"] == 400 and field in error["message"]
    assert after == before and len(before) == 5


def test_an_imported_upload_is_served_as_its_bytes(tmp_path: Path) -> None:
    def declared_html(state: dict[str, Any]) -> None:
        state["uploads"][0]["content_type"] = "text/html"

    async def run() -> str:
        transport = httpx.ASGITransport(app=create_app(Settings()))
        async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
            state = await _exported(client)
            declared_html(state)
            assert (await client.put("/__mock__/state", json=state)).status_code == 200
            again = (await client.get("/__mock__/state")).json()
            return str(again["uploads"][0]["content_type"])

    assert asyncio.run(run()) == "image/png"


def test_a_refused_document_leaves_the_clock_where_it_was() -> None:
    """A document refused on its last item (a canned response whose content-length lies) moves no clock."""

    async def run() -> tuple[int, float, float]:
        transport = httpx.ASGITransport(app=create_app(Settings(), clock=VirtualClock()))
        async with httpx.AsyncClient(transport=transport, base_url="http://fake") as client:
            state = await _exported(client)
            before = (await client.get("/__mock__/clock")).json()["now"]
            state["clock"]["now"] = before + 86_400
            lying = {"id": "resp_1", "path": "/v1/x", "headers": {"Content-Length": "3"}, "text": "hello"}
            state["canned_responses"] = [lying]
            answer = await client.put("/__mock__/state", json=state)
            return answer.status_code, before, (await client.get("/__mock__/clock")).json()["now"]

    status, before, after = asyncio.run(run())
    assert status == 400
    assert after - before < 60
