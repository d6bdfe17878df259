"""The service (``mockserver.service.Fake``) on its own: decisions without HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from mockserver import create_app, service
from mockserver.control import ControlPlane
from mockserver.core.clock import VirtualClock
from mockserver.core.errors import ApiError, StoreUnavailable
from mockserver.files import Files
from mockserver.service import Fake
from mockserver.settings import Settings
from mockserver.store import MemoryStore
from mockserver.store.sqlite import SQLiteStore
from mockserver.testing.transport import SyncASGITransport

from .helpers import blocking

BODY = {"prompt": "a cat", "image_urls": ["https://example.com/cat.png"]}


class GatedClock(VirtualClock):
    """A virtual clock whose ``sleep`` waits until the test opens the gate: a request held mid-way."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.sleeping = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.sleeping.set()
        await self.gate.wait()
        self.advance(seconds)


def fake(clock: VirtualClock | None = None, **settings: Any) -> Fake:
    return Fake(Settings(**{"task_seconds": 10.0, **settings}), MemoryStore(), clock or VirtualClock())


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_submit_then_poll_without_http() -> None:
    f = fake()
    account = f.account("Bearer t")
    accepted = run(f.submit("video", account, {**BODY, "batch_size": 2}))
    polled = run(f.poll(account, accepted.task_id))
    assert (polled.view.status.value, polled.record.clips, polled.record.charge) == ("SUBMITTED", 2, 4.0)
    f.clock.advance(11)  # type: ignore[attr-defined]
    assert run(f.poll(account, accepted.task_id)).view.status.value == "SUCCESS"


def test_refusals_are_api_errors() -> None:
    f = fake()
    with pytest.raises(ApiError) as missing:
        f.account(None)
    assert (missing.value.status, missing.value.type) == (401, "apimart_error")
    with pytest.raises(ApiError) as refused:
        run(f.submit("video", f.account("Bearer t"), {"prompt": "x"}))
    assert (refused.value.status, refused.value.param) == (400, "image_urls")
    with pytest.raises(ApiError) as other:
        run(f.poll(f.account("Bearer u"), run(f.submit("video", f.account("Bearer t"), BODY)).task_id))
    assert other.value.status == 403


def test_same_key_while_the_first_is_in_flight_is_409() -> None:
    async def scenario() -> tuple[Any, ApiError]:
        clock = GatedClock()
        f = fake(clock)
        account = f.account("Bearer t")
        blocking(ControlPlane(f)).add_fault_rule("latency", {"ms": "1000"}, endpoint="video", times=1)
        first = asyncio.create_task(f.submit("video", account, BODY, key="k-1"))
        await clock.sleeping.wait()  # the first request is now being handled
        try:
            await f.submit("video", account, BODY, key="k-1")
        except ApiError as error:
            refused = error
        clock.gate.set()
        return await first, refused

    accepted, refused = run(scenario())
    assert accepted.task_id.startswith("task_")
    assert (refused.status, refused.code, refused.param) == (409, None, "Idempotency-Key")
    assert "(idempotency_in_progress)" in refused.message


def test_same_key_other_body_is_409_reused() -> None:
    f = fake()
    account = f.account("Bearer t")
    first = run(f.submit("video", account, BODY, key="k"))
    assert run(f.submit("video", account, BODY, key="k")) == type(first)(first.task_id, replayed=True)
    with pytest.raises(ApiError) as reused:
        run(f.submit("video", account, {**BODY, "batch_size": 2}, key="k"))
    assert (reused.value.status, reused.value.code) == (409, None)
    assert reused.value.body()["error"]["code"] == 409 and "(idempotency_key_reused)" in reused.value.message


def test_journal_facts_are_filled_in() -> None:
    f = fake()
    facts: dict[str, Any] = {}
    account = f.account("Bearer t", facts)
    accepted = run(f.submit("video", account, BODY, fault_header="moderation", facts=facts))
    assert facts == {"account": account, "scenario": "moderation", "task_id": accepted.task_id}


def test_media_file_is_tagged_per_task_and_index() -> None:
    f = fake(task_seconds=0)
    account = f.account("Bearer t")
    task_id = run(f.submit("video", account, {**BODY, "batch_size": 2})).task_id
    files = Files(f)
    first, second = run(files.media_file(task_id, "0.mp4")), run(files.media_file(task_id, "1.mp4"))
    assert first.content_type == second.content_type == "video/mp4"
    assert first.data != second.data
    for name in ("2.mp4", "x.mp4", "².mp4", "0" * 5000 + ".mp4", "grid.png"):
        with pytest.raises(ApiError) as missing:
            run(files.media_file(task_id, name))
        assert missing.value.status == 404


def test_clock_reset_with_everything() -> None:
    f = fake()
    f.clock.advance(1000)  # type: ignore[attr-defined]
    blocking(ControlPlane(f)).reset()
    assert f.clock.now() == VirtualClock().now()


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


# -- the clock every worker shares (``service.StoreClock``) ------------------------------------------


class RefusingClockStore(MemoryStore):
    """A memory store whose clock cannot be written (a store that answers 503)."""

    async def set_clock_state(self, offset: float, frozen_at: float | None) -> None:
        raise StoreUnavailable("test: the clock cannot be written")


def test_a_clock_move_the_store_refuses_moves_no_clock() -> None:
    store = RefusingClockStore()
    app = create_app(Settings(), store=store)  # the server's clock: kept in the store
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://testserver") as client:
        before = client.get("/__mock__/clock").json()
        assert before["frozen"] is False
        refused = client.post("/__mock__/clock", json={"freeze": True})
        assert refused.status_code == 503, refused.text
        assert client.get("/__mock__/clock").json()["frozen"] is False  # the move was taken back
    assert store.shared().clock == (0.0, None)


def test_a_clock_moved_from_plain_code_is_written_for_every_worker(tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path / 'clock.db'}"
    fake = Fake.open(Settings(state=state).validated())
    fake.clock.advance(3600)  # type: ignore[attr-defined]
    other = blocking(SQLiteStore(tmp_path / "clock.db"))  # another worker's view
    other.refresh()
    assert other.shared().clock[0] == pytest.approx(3600)
