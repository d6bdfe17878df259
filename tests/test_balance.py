"""GET /v1/balance, /balance, /v1/user/balance, /user/balance: the provider's account pages, answered
from the fake's ledger (docs/evidence.md, "balance endpoints")."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mockserver import Settings, create_app
from mockserver.core.accounts import account_id
from mockserver.core.clock import VirtualClock
from mockserver.core.spec import Spec
from mockserver.pytest_plugin import shown_args
from mockserver.testing.control import MockControl
from mockserver.testing.transport import SyncASGITransport

from .conftest import MakeApi

PATHS = ["/v1/balance", "/balance", "/v1/user/balance", "/user/balance"]
KEY = {"Authorization": "Bearer k1"}
BODY = {"prompt": "p", "image_urls": ["https://example.com/a.png"]}
VIDEO = "/v1/midjourney/generations/video"


def client(**settings: Any) -> Iterator[httpx.Client]:
    app = create_app(Settings(**{"task_seconds": 0, **settings}), clock=VirtualClock())
    transport = SyncASGITransport(app)
    with httpx.Client(transport=transport, base_url="http://127.0.0.1:8000", headers=KEY) as c:
        yield c
    transport.close()


@pytest.fixture
def api() -> Iterator[httpx.Client]:
    yield from client()


def conforms(body: Any) -> None:
    Spec.shared().check("Balance", body)


@pytest.mark.parametrize("path", PATHS)
def test_an_account_with_no_balance_set_is_unlimited(api: httpx.Client, path: str) -> None:
    body = api.get(path).json()
    conforms(body)
    assert body == {"success": True, "remain_balance": -1, "used_balance": 0.0, "unlimited_quota": True}


@pytest.mark.parametrize("path", PATHS)
def test_used_and_remaining_follow_the_ledger(api: httpx.Client, path: str) -> None:
    api.post("/__mock__/balances", json={"token": "k1", "balance": 10})
    assert api.post("/v1/midjourney/generations/video", json={**BODY, "batch_size": 2}).status_code == 200
    body = api.get(path).json()
    conforms(body)
    assert body == {"success": True, "remain_balance": 6.0, "used_balance": 4.0, "unlimited_quota": False}


def test_a_refunded_task_costs_nothing() -> None:
    for c in client():
        c.post("/__mock__/balances", json={"token": "k1", "balance": 10})
        c.post("/v1/midjourney/generations/video", json=BODY, headers={"X-Mock-Scenario": "fail"})
        c.get("/v1/tasks/" + c.get("/__mock__/tasks").json()["tasks"][0]["record"]["id"])
        assert c.get("/v1/balance").json()["remain_balance"] == 10


def test_the_unit_is_a_setting() -> None:
    for c in client(balance_unit="usd", usd_per_credit=0.1):
        c.post("/__mock__/balances", json={"token": "k1", "balance": 10})
        c.post("/v1/midjourney/generations/video", json=BODY)
        assert c.get("/v1/balance").json() == {
            "success": True, "remain_balance": 0.8, "used_balance": 0.2, "unlimited_quota": False
        }  # fmt: skip


def test_an_unknown_key_is_a_200_saying_so_and_no_key_a_401() -> None:
    for c in client(api_keys="k1"):
        unknown = c.get("/v1/balance", headers={"Authorization": "Bearer nope"})
        assert unknown.status_code == 200
        conforms(unknown.json())
        assert unknown.json() == {"success": False, "message": "Failed to get token info"}
        missing = c.get("/v1/user/balance", headers={"Authorization": ""})
        assert missing.status_code == 401 and missing.json()["error"]["code"] == 401


def test_the_control_client_reads_the_balance_as_the_client_would(apimart_mock: MockControl) -> None:
    assert apimart_mock.ledger.balance("t") == {
        "success": True,
        "remain_balance": -1,
        "used_balance": 0.0,
        "unlimited_quota": True,
    }
    apimart_mock.ledger.set_balance("t", 10)
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer t"}) as client:
        client.post("/v1/midjourney/generations/video", json={"prompt": "p", "image_urls": ["https://e.com/a.png"]})
    answer = apimart_mock.ledger.balance("t")
    assert (answer["remain_balance"], answer["used_balance"], answer["unlimited_quota"]) == (8, 2, False)


@pytest.mark.apimart(shared_accounts="team=ta+tb")
def test_the_control_client_reads_a_shared_accounts_key_and_user_balance(apimart_mock: MockControl) -> None:
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer ta"}) as client:
        client.post(VIDEO, json=BODY)
    assert apimart_mock.ledger.balance("tb")["used_balance"] == 0
    assert apimart_mock.ledger.user_balance("tb")["used_balance"] == 2
    assert apimart_mock.ledger.spent(token="tb") == 2  # the account's
    (account,) = apimart_mock.ledger.summary(token="ta")["accounts"].values()
    assert list(account["by_key"].values()) == [2.0]  # what each key spent, by its key_id (the dashboard's)
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": "Bearer solo"}) as client:
        client.post(VIDEO, json=BODY)
    (alone,) = apimart_mock.ledger.summary(token="solo")["accounts"].values()
    assert "by_key" not in alone  # a key that is its own account
    apimart_mock.account("tb").configure(task_dialect="mj")  # the shared account's setting, by either key
    assert apimart_mock.account("ta").settings() == {"task_dialect": "mj"}


def test_the_control_client_reads_the_balance_of_a_real_server(apimart_server: MockControl) -> None:
    apimart_server.ledger.set_balance("s", 5)
    assert apimart_server.ledger.balance("s")["remain_balance"] == 5


@pytest.mark.all_stores
@pytest.mark.parametrize("dialect", ["unified", "mj"])
def test_keys_sharing_an_account_see_its_balance_and_their_own_use(make_api: MakeApi, dialect: str) -> None:
    """--shared-accounts: /v1/user/balance is the account's, /v1/balance what the key spent of it."""
    api = make_api(task_dialect=dialect, shared_accounts="team=ka+kb,solo=kc")
    a, b = {"Authorization": "Bearer ka"}, {"Authorization": "Bearer kb"}
    api.client.post("/__mock__/balances", json={"token": "ka", "balance": 20})
    first = api.client.post(VIDEO, json={**BODY, "batch_size": 2}, headers=a)
    assert first.status_code == 200
    assert api.client.post(VIDEO, json=BODY, headers=b).status_code == 200
    account = {"success": True, "remain_balance": 14.0, "used_balance": 6.0, "unlimited_quota": False}
    for headers in (a, b):
        for path in ("/v1/user/balance", "/user/balance"):
            assert api.client.get(path, headers=headers).json() == account
    for path in ("/v1/balance", "/balance"):
        assert api.client.get(path, headers=a).json() == {**account, "used_balance": 4.0}
        assert api.client.get(path, headers=b).json() == {**account, "used_balance": 2.0}
    own = api.client.get("/v1/balance", headers={"Authorization": "Bearer kc"}).json()
    assert own == {"success": True, "remain_balance": -1, "used_balance": 0.0, "unlimited_quota": True}
    task_id = first.json()["data"][0]["task_id"]
    assert api.client.get(f"/v1/tasks/{task_id}", headers=b).status_code == 200  # one account's task


@pytest.mark.parametrize(
    "value", ["team", "team=", "=ka", "team=ka,other=ka", " , "], ids=["no-keys", "blank", "no-name", "twice", "none"]
)
def test_shared_accounts_that_cannot_be_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="shared_accounts"):
        Settings(shared_accounts=value).validated()


def test_a_shared_keys_own_account_id_names_the_shared_account_in_the_control_plane() -> None:
    """A client that hashes its key (as MockControl does) reaches the account the key shares."""
    for c in client(shared_accounts="team=ka+kb"):
        assert c.post(VIDEO, json=BODY, headers={"Authorization": "Bearer ka"}).status_code == 200
        c.post("/__mock__/balances", json={"account": account_id("ka"), "balance": 2})  # what ka spent already
        refused = c.post(VIDEO, json=BODY, headers={"Authorization": "Bearer kb"})
        assert refused.status_code == 402
        assert c.get("/__mock__/tasks", params={"account": account_id("kb")}).json()["total"] == 1
        ledger = c.get("/__mock__/ledger", params={"account": account_id("kb")}).json()
        assert ledger["total_spent"] == 2


def test_a_malformed_shared_accounts_setting_never_repeats_a_key() -> None:
    with pytest.raises(ValueError) as refused:
        Settings(shared_accounts="sk-live-AAAA+sk-live-BBBB").validated()
    assert "sk-live" not in str(refused.value) and "account 1" in str(refused.value)


@pytest.mark.parametrize("header", ["Bearer ", "Bearer", "Basic abc", "dev"])
def test_a_header_with_no_bearer_key_is_a_401_not_an_unknown_key(header: str) -> None:
    """Only a key that is there but not known answers 200 success false; no key is a 401, as submit says."""
    for c in client():
        for path in PATHS:
            refused = c.get(path, headers={"Authorization": header})
            assert refused.status_code == 401 and refused.json()["error"]["code"] == 401, (path, header)


@pytest.mark.parametrize("value", ["sk-a+sk-b=team", "team name=ka", "x" * 65 + "=ka"])
def test_a_shared_account_name_is_plain_so_keys_cannot_pass_for_one(value: str) -> None:
    with pytest.raises(ValueError) as refused:
        Settings(shared_accounts=value).validated()
    assert not [part for part in re.split(r"[=+]", value) if part in str(refused.value)]  # no key, no name


@pytest.mark.e2e
def test_a_server_that_cannot_start_says_why_without_the_keys(tmp_path: Path) -> None:
    from mockserver.testing import RunningServer

    with pytest.raises(RuntimeError) as failed:
        RunningServer(["--shared-accounts", "=sk-SECRET+k2"]).__enter__()
    assert "account 1 is not NAME=KEY+KEY" in str(failed.value) and "sk-SECRET" not in str(failed.value)
    assert shown_args(["--task-seconds", "0", "--shared-accounts", "=sk-SECRET", "--api-keys=sk-X"]) == [
        "--task-seconds", "0", "--shared-accounts", "…", "--api-keys=…"
    ]  # fmt: skip
