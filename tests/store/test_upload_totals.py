"""The upload quotas against running totals (``store.base``): the same refusals as summing every
held upload gave, totals that follow expiry, deletion, resets and imports, and a cost per upload
that does not grow with the number of uploads held."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest

from mockserver import Settings, VirtualClock, create_app
from mockserver.control import ControlPlane
from mockserver.core.media import upload_id_of
from mockserver.core.records import UploadRecord
from mockserver.store import Store, UploadUsage
from mockserver.testing.transport import SyncASGITransport

from ..conftest import SPEC, MakeApi, MakeStore
from ..helpers import AUTH, Api, blocking, tiny_png

UPLOAD = "/v1/uploads/images"
TTL = 3 * 86400.0
pytestmark = pytest.mark.all_stores  # memory and SQLite; Redis too (an e2e test: a real redis-server)


def png(size: int = 1200) -> bytes:
    """A valid PNG padded to ``size`` bytes (what the quotas count)."""
    data = tiny_png(8, 8)
    return data + b"\x00" * (size - len(data))


def upload(api: Api, token: str = "a", size: int = 1200) -> httpx.Response:
    files = {"file": ("a.png", png(size), "image/png")}
    return api.client.post(UPLOAD, files=files, headers={"Authorization": f"Bearer {token}"})


def account_of(api: Api, token: str) -> str:
    """The account of ``token``, found by uploading 100 bytes for it."""
    response = upload(api, token, 100)
    assert response.status_code == 200, response.text
    upload_id = upload_id_of(response.json()["url"])
    stored = blocking(api.fake.store).get_upload(upload_id) if upload_id else None
    assert stored is not None
    account: str = stored.account
    return account


def usage(store: Store, account: str) -> UploadUsage:
    found: UploadUsage = blocking(store).upload_usage(account)
    return found


def summed(store: Store, account: str) -> UploadUsage:
    """What the totals must say: the held uploads, summed (as the quota check did before them)."""
    held = blocking(store).upload_records()
    return UploadUsage(sum(u.size for u in held if u.account == account), sum(u.size for u in held))


def test_account_quota_refuses_at_the_same_point_with_the_same_message(make_api: MakeApi) -> None:
    api = make_api(upload_quota_bytes=3000)
    assert upload(api).status_code == 200
    assert upload(api).status_code == 200
    full = upload(api)
    assert full.status_code == 413
    assert full.json()["error"]["message"] == (
        f"this account keeps 2400 bytes of uploads; 1200 more would pass its quota of 3000 "
        f"(uploads expire {TTL:g} s after upload)"
    )
    assert full.json()["error"]["param"] == "file"
    assert upload(api, size=600).status_code == 200  # exactly at the quota: allowed
    assert upload(api, size=1).status_code == 413
    assert upload(api, "b").status_code == 200  # the quota is per account
    api.clock.advance(TTL)  # the first ones expire (at their lifetime's end) and are evicted
    assert upload(api).status_code == 200
    assert upload(api).status_code == 200
    assert upload(api).status_code == 413


def test_server_quota_refuses_at_the_same_point_with_the_same_message(make_api: MakeApi) -> None:
    api = make_api(upload_quota_bytes=3000, upload_total_bytes=5000)
    for token in ("a", "a", "b", "b"):
        assert upload(api, token).status_code == 200
    full = upload(api, "c")
    assert full.status_code == 413
    assert full.json()["error"]["message"] == "the server's upload storage is full; retry when older uploads expire"
    assert upload(api, "c", 200).status_code == 200  # 5000 exactly
    assert upload(api, "c", 1).status_code == 413
    within_its_own = upload(api, "a", 1)  # 2401 bytes of the account's 3000: the server's quota refuses
    assert within_its_own.status_code == 413 and "server's upload storage is full" in within_its_own.text
    api.clock.advance(TTL + 1)
    assert upload(api, "c", 3000).status_code == 200


def test_totals_follow_uploads_expiry_deletion_reset_and_import(make_api: MakeApi) -> None:
    api = make_api()
    store = api.fake.store
    a, b = account_of(api, "a"), account_of(api, "b")
    assert usage(store, a) == summed(store, a) == UploadUsage(100, 200)
    urls = [upload(api, "a", 500).json()["url"] for _ in range(3)]
    upload(api, "b", 700)
    assert usage(store, a) == summed(store, a) == UploadUsage(1600, 2400)
    assert usage(store, b) == summed(store, b) == UploadUsage(800, 2400)

    api.clock.advance(TTL / 2)
    upload(api, "b", 300)  # a later one, outliving the first ones
    api.clock.advance(TTL / 2)
    assert api.client.get(urls[0]).status_code == 410  # an expired upload read: evicted on the spot
    assert usage(store, a) == summed(store, a) == UploadUsage(1100, 2200)
    assert upload(api, "a", 400).status_code == 200  # the other expired ones are evicted first
    assert usage(store, a) == summed(store, a) == UploadUsage(400, 700)
    assert usage(store, b) == summed(store, b) == UploadUsage(300, 700)

    document = blocking(ControlPlane(api.fake)).export_state(upload_data=True)
    blocking(ControlPlane(api.fake)).reset(b)
    assert usage(store, b) == summed(store, b) == UploadUsage(0, 400)
    assert usage(store, a) == UploadUsage(400, 400)
    blocking(ControlPlane(api.fake)).import_state(document)
    assert usage(store, a) == summed(store, a) == UploadUsage(400, 700)
    assert usage(store, b) == summed(store, b) == UploadUsage(300, 700)
    blocking(ControlPlane(api.fake)).import_state(document)  # the same uploads again (replaced, not counted twice)
    assert usage(store, a) == summed(store, a) == UploadUsage(400, 700)

    blocking(ControlPlane(api.fake)).reset()
    assert usage(store, a) == usage(store, b) == summed(store, a) == UploadUsage(0, 0)
    assert upload(api, "a", 900).status_code == 200
    assert usage(store, a) == UploadUsage(900, 900)


def test_a_replaced_upload_moves_its_bytes(make_store: MakeStore) -> None:
    store = blocking(make_store())
    store.put_upload(UploadRecord("upl_1", "acct_a", "a.png", "image/png", 10, 1.0, b"x" * 10))
    store.put_upload(UploadRecord("upl_1", "acct_b", "a.png", "image/png", 4, 2.0, b"x" * 4))
    assert usage(store, "acct_a") == UploadUsage(0, 4)
    assert usage(store, "acct_b") == summed(store, "acct_b") == UploadUsage(4, 4)
    store.put_upload(UploadRecord("upl_2", "acct_b", "b.png", "image/png", 6, 3.0, b"x" * 6), evict_by=2.0)
    assert usage(store, "acct_b") == summed(store, "acct_b") == UploadUsage(6, 6)  # upl_1 (at 2.0) evicted
    assert store.delete_upload("upl_2") and not store.delete_upload("upl_2")
    assert usage(store, "acct_b") == UploadUsage(0, 0)


class Counting:
    """A store that counts the calls made to it and the records its answers hold."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.calls: dict[str, int] = {}
        self.records = 0  # items in every list answered (what was read to answer)

    def __getattr__(self, name: str) -> Any:
        found = getattr(self.store, name)
        if not callable(found):
            return found

        if not inspect.iscoroutinefunction(found):
            return found

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            answer = await found(*args, **kwargs)
            if isinstance(answer, list | tuple | dict) and not isinstance(answer, UploadUsage):
                self.records += len(answer)
            return answer

        return call

    def take(self) -> tuple[dict[str, int], int]:
        taken = (self.calls, self.records)
        self.calls, self.records = {}, 0
        return taken


@pytest.fixture
def counted(make_store: MakeStore) -> Iterator[tuple[httpx.Client, Counting, VirtualClock]]:
    counting = Counting(make_store())
    clock = VirtualClock()
    app = create_app(Settings(), clock=clock, spec=SPEC, store=cast(Store, counting))
    with httpx.Client(transport=SyncASGITransport(app), base_url="http://testserver", headers=AUTH) as client:
        yield client, counting, clock


def test_store_work_per_upload_does_not_grow_with_uploads_held(
    counted: tuple[httpx.Client, Counting, VirtualClock],
) -> None:
    client, counting, clock = counted
    data = png(300)

    def one() -> tuple[dict[str, int], int]:
        counting.take()
        assert client.post(UPLOAD, files={"file": ("a.png", data, "image/png")}).status_code == 200
        return counting.take()

    for _ in range(2):
        one()
    calls_few, records_few = one()
    for _ in range(300):
        one()
    calls_many, records_many = one()
    assert calls_many == calls_few  # the same store calls at 3 held as at 303 held
    assert records_many == records_few  # and no more records read (none: no listing of the uploads)
    assert "upload_records" not in calls_many
    assert calls_many.get("put_upload") == 1
    clock.advance(TTL)  # all 304 expire: evicted by the next upload, in the same store call
    calls_after, records_after = one()
    assert calls_after == calls_few and records_after == records_few
    assert len(blocking(counting.store).upload_records()) == 1
