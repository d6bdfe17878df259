"""The browser dashboard at /__mock__/, in a real headless Chromium against the real server.

One server (``--task-seconds 10``) and one browser for the module; each test resets the
server, freezes its clock and opens a fresh page. Nothing sleeps: every wait is for a
condition, bounded by Playwright's timeouts. Each test leaves a screenshot of its view
in $MOCKSERVER_SCREENSHOTS (`make screenshots`: docs/screenshots/).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest

from ..browser import browser, page, screenshot, why_no_browser

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

DASHBOARD = Path(__file__).resolve().parents[2] / "mockserver" / "web" / "dashboard"
TOKEN = "dashboard-test"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VIDEO = "/v1/midjourney/generations/video"
IMAGINE = "/v1/midjourney/generations"
FRAME = "https://example.com/cat.png"
WAIT_MS = 10_000
# What the page may call: the control plane of spec/control.yaml, its own files, the public media.
ALLOWED = re.compile(
    r"^/__mock__/(|dashboard/app\.(js|css)|clock|scenarios(/[\w-]+)?|requests|ledger|balances|tasks(/[\w-]+)?"
    r"|reset|health)$|^/media/[\w-]+/(\d+\.mp4|\d+\.png|grid\.png)$"
)

needs_browser = pytest.mark.skipif(why_no_browser() is not None, reason=f"browser tests: {why_no_browser()}")


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    from mockserver.testing import RunningServer

    with RunningServer(["--task-seconds", "10", "--shared-accounts", "team=shared-a+shared-b"]) as control:
        yield str(control.base_url).rstrip("/")


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with browser() as instance:
        yield instance


@pytest.fixture
def api(base_url: str) -> Iterator[httpx.Client]:
    """A client of the server, reset and with its clock frozen."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.post("/__mock__/reset", json={}).status_code == 200
        assert client.post("/__mock__/clock", json={"freeze": True}).status_code == 200
        yield client


@pytest.fixture
def tab(chromium: Browser, base_url: str) -> Iterator[Page]:
    """A fresh page; afterwards, no script error and no call outside the allowed endpoints."""
    with page(chromium) as p:
        called: list[str] = []
        p.on("request", lambda request: called.append(request.url))
        yield p
        errors: list[str] = p.errors  # type: ignore[attr-defined]
        assert errors == [], f"script errors on the page: {errors}"
        for url in called:
            parts = urlsplit(url)
            if url.startswith("data:"):
                continue
            assert f"{parts.scheme}://{parts.netloc}" == base_url, f"the page called another host: {url}"
            assert ALLOWED.match(parts.path), f"the page called an endpoint it may not use: {url}"


def open_view(tab: Page, base_url: str, view: str) -> None:
    tab.goto(f"{base_url}/__mock__/#{view}")


def submit(api: httpx.Client, path: str = VIDEO, token: str = TOKEN, **body: Any) -> str:
    body.setdefault("prompt", "the cat turns its head")
    if path == VIDEO:
        body.setdefault("image_urls", [FRAME])
    r = api.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    task_id: str = r.json()["data"][0]["task_id"]
    return task_id


def advance(api: httpx.Client, seconds: float) -> None:
    assert api.post("/__mock__/clock", json={"advance": seconds}).status_code == 200


def row(tab: Page, task_id: str) -> Any:
    return tab.locator(f'#tasks-body tr[data-id="{task_id}"]')


# -- tests -----------------------------------------------------------------------------------


def test_page_weight_and_no_outside_resources() -> None:
    files = {p.name: p.read_bytes() for p in DASHBOARD.iterdir() if p.is_file()}
    assert {"index.html", "app.js", "app.css"} <= set(files)
    assert sum(len(b) for b in files.values()) < 200 * 1024
    for name, content in files.items():
        text = content.decode()
        assert "http://" not in text.replace("http://127.0.0.1", ""), name  # no CDN, no remote font
        assert "https://" not in text.replace("https://example.com", ""), name


@pytest.mark.e2e
@needs_browser
def test_tasks_appear_live_and_progress_moves(tab: Page, api: httpx.Client, base_url: str) -> None:
    from playwright.sync_api import expect

    open_view(tab, base_url, "tasks")
    expect(tab.locator("#tasks-empty")).to_be_visible()
    task_id = submit(api, batch_size=2)
    line = row(tab, task_id)
    expect(line).to_have_attribute("data-status", "SUBMITTED", timeout=WAIT_MS)  # the page polls: no reload
    expect(line.locator("td").nth(2)).to_contain_text("acct_")
    expect(line).to_contain_text("VIDEO")
    expect(line).to_contain_text("vid_1.1_i2v_480")
    expect(line.locator("td").nth(5)).to_have_text("2")
    assert line.locator(".fill").get_attribute("style") == "width:0%"

    advance(api, 5)  # half of --task-seconds 10
    expect(line).to_have_attribute("data-status", "IN_PROGRESS", timeout=WAIT_MS)
    progress = int(line.get_attribute("data-progress") or 0)
    internal = api.get(f"/__mock__/tasks/{task_id}").json()
    assert 0 < progress < 100
    assert progress == internal["view"]["progress"]
    assert line.locator(".fill").get_attribute("style") == f"width:{progress}%"
    expect(line.locator(".pct")).to_have_text(f"{progress}%")
    record = internal["record"]
    assert record["charge"] == 2 * record["unit_price"]  # 2 clips
    expect(line.locator("td").nth(8)).to_have_text(credits(record["unit_price"]))
    expect(line.locator("td").nth(9)).to_have_text(credits(record["charge"]))

    advance(api, 5)
    expect(line).to_have_attribute("data-status", "SUCCESS", timeout=WAIT_MS)
    expect(line.locator(".pct")).to_have_text("100%")
    expect(line.locator(".badge")).to_have_text("SUCCESS")
    screenshot(tab, "tasks")


def answer_without_paging(tab: Page) -> None:
    """Make GET /__mock__/tasks answer as a server without paging does: every task, oldest first, no total."""
    from playwright.sync_api import Route

    def old_server(route: Route) -> None:
        parts = urlsplit(route.request.url)
        kept = [p for p in parts.query.split("&") if p.startswith(("account=", "token="))]
        answer = route.fetch(url=f"{parts.scheme}://{parts.netloc}{parts.path}?{'&'.join(kept)}")
        everything = answer.json()
        route.fulfill(response=answer, json={"tasks": everything["tasks"]})

    tab.route(re.compile(r"/__mock__/tasks(\?.*)?$"), old_server)


@pytest.mark.e2e
@needs_browser
@pytest.mark.parametrize("paging", ["server", "client"])
def test_tasks_newest_first_paged_and_filtered(tab: Page, api: httpx.Client, base_url: str, paging: str) -> None:
    from playwright.sync_api import expect

    if paging == "client":
        answer_without_paging(tab)

    ids = []
    for n in range(55):
        ids.append(submit(api, prompt=f"clip {n}"))
        advance(api, 0.01)  # distinct submission times: "newest first" is one order
    other = submit(api, IMAGINE, token="someone-else", prompt="a red fox")
    advance(api, 10)
    moderated = submit(api, prompt="banned [mock:moderation]")
    advance(api, 10)

    open_view(tab, base_url, "tasks")
    body = tab.locator("#tasks-body tr")
    expect(body).to_have_count(50, timeout=WAIT_MS)
    assert tab.evaluate("window.dashboardTimings.server_paged") is (paging == "server")
    expect(tab.locator("#tasks-pager .range")).to_have_text("1–50 of 57")
    newest_first = [moderated, other, *reversed(ids)]
    assert body.evaluate_all("rows => rows.map(r => r.dataset.id)") == newest_first[:50]

    tab.locator('#tasks-pager [data-go="next"]').click()
    expect(tab.locator("#tasks-pager .range")).to_have_text("51–57 of 57", timeout=WAIT_MS)
    expect(body).to_have_count(7)
    assert body.evaluate_all("rows => rows.map(r => r.dataset.id)") == newest_first[50:]

    tab.select_option("#tasks-status", "FAILURE")
    expect(body).to_have_count(1, timeout=WAIT_MS)
    expect(row(tab, moderated)).to_contain_text("refunded")
    tab.select_option("#tasks-status", "")

    tab.fill("#tasks-account", "someone-else")  # a token: the page asks by token
    expect(body).to_have_count(1, timeout=WAIT_MS)
    expect(row(tab, other)).to_contain_text("IMAGINE")
    account = api.get(f"/__mock__/tasks/{other}").json()["record"]["account"]
    tab.fill("#tasks-account", account)  # or by account id
    expect(body).to_have_count(1, timeout=WAIT_MS)
    expect(row(tab, other)).to_be_visible()


@pytest.mark.e2e
@needs_browser
def test_task_detail_plays_its_clips(tab: Page, api: httpx.Client, base_url: str) -> None:
    from playwright.sync_api import expect

    task_id = submit(api, batch_size=2, motion="low")
    advance(api, 3)
    assert api.get(f"/v1/tasks/{task_id}", headers=AUTH).status_code == 200  # one poll, as a client would
    open_view(tab, base_url, "tasks")
    row(tab, task_id).click()
    expect(tab.locator("#task-detail h1")).to_have_text(task_id, timeout=WAIT_MS)
    expect(tab.locator("#d-status")).to_have_text("IN_PROGRESS")
    expect(tab.locator("#d-results")).to_contain_text("appear here when the task succeeds")
    expect(tab.locator("#d-poll-count")).to_have_text("1")
    expect(tab.locator("#d-settings")).to_contain_text("vid_1.1_i2v_480")
    expect(tab.locator("#d-settings")).to_contain_text("motion")
    expect(tab.locator("#d-settings")).to_contain_text("low")
    expect(tab.locator("#d-timeline li.done")).to_have_count(2)  # submitted, started

    advance(api, 10)
    expect(tab.locator("#d-status")).to_have_text("SUCCESS", timeout=WAIT_MS)
    expect(tab.locator("#d-timeline li.done")).to_have_count(3)
    videos = tab.locator("#d-results video")
    expect(videos).to_have_count(2)
    for n in range(2):
        tab.wait_for_function(
            "n => document.querySelectorAll('#d-results video')[n].readyState >= 1", arg=n, timeout=WAIT_MS
        )
        src = videos.nth(n).get_attribute("src") or ""
        assert src.endswith(f"/media/{task_id}/{n}.mp4")
        answer = api.get(src)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "video/mp4"
    size = videos.nth(0).evaluate("v => [v.videoWidth, v.videoHeight]")
    assert size == [832, 464]  # 480p clips
    screenshot(tab, "task")


@pytest.mark.e2e
@needs_browser
def test_imagine_detail_shows_its_grid(tab: Page, api: httpx.Client, base_url: str) -> None:
    from playwright.sync_api import expect

    task_id = submit(api, IMAGINE, prompt="a red fox")
    advance(api, 10)
    open_view(tab, base_url, f"task/{task_id}")
    expect(tab.locator("#d-status")).to_have_text("SUCCESS", timeout=WAIT_MS)
    images = tab.locator("#d-results img")
    expect(images).to_have_count(5)
    names = images.evaluate_all("imgs => imgs.map(i => i.getAttribute('src').split('/').pop())")
    assert names == ["grid.png", "0.png", "1.png", "2.png", "3.png"]
    tab.wait_for_function(
        "() => [...document.querySelectorAll('#d-results img')].every(i => i.complete && i.naturalWidth > 0)",
        timeout=WAIT_MS,
    )
    screenshot(tab, "task-imagine")


@pytest.mark.e2e
@needs_browser
def test_requests_show_a_refusal_and_why(tab: Page, api: httpx.Client, base_url: str) -> None:
    from playwright.sync_api import expect

    accepted = submit(api)
    refused = api.post(VIDEO, json={"prompt": "x"}, headers=AUTH)
    assert refused.status_code == 400
    error = refused.json()["error"]
    api.get(f"/v1/tasks/{accepted}", headers=AUTH)

    open_view(tab, base_url, "requests")
    rows = tab.locator("#req-body tr[data-seq]")
    expect(rows).to_have_count(3, timeout=WAIT_MS)
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.status)") == ["200", "400", "200"]  # newest first
    noted = next(e for e in api.get("/__mock__/requests", params={"limit": 5}).json()["requests"] if e["status"] == 400)
    bad = tab.locator(f'#req-body tr[data-seq="{noted["seq"]}"]')
    expect(bad).to_have_class(re.compile(r"\brefused\b"))
    expect(tab.locator("#req-body tr.refused")).to_have_count(1)

    bad.click()
    detail = tab.locator(f'#req-body tr.expanded-row[data-for="{noted["seq"]}"]')
    expect(detail).to_be_visible()
    expect(detail.locator("pre.json").first).to_contain_text('"prompt": "x"')
    expect(detail.locator(".error-box")).to_contain_text("Refused 400")
    if "error" in noted:  # the journal keeps the refusal's facts: the page shows the message and the field
        expect(bad).to_contain_text(error["message"][:40])
        expect(detail.locator(".error-box")).to_contain_text(error["message"])
        expect(detail.locator(".error-box")).to_contain_text(error["param"])

    tab.select_option("#req-status", "err")
    expect(rows).to_have_count(1, timeout=WAIT_MS)
    tab.select_option("#req-status", "")
    tab.fill("#req-path", "/v1/tasks")
    expect(rows).to_have_count(1, timeout=WAIT_MS)
    expect(rows.first).to_contain_text(accepted)
    tab.fill("#req-path", "")
    expect(rows).to_have_count(3, timeout=WAIT_MS)

    # live: a new request shows up on top without a reload
    api.post(VIDEO, json={"prompt": "p", "image_urls": [FRAME], "batch_size": 3}, headers=AUTH)
    expect(rows).to_have_count(4, timeout=WAIT_MS)
    expect(rows.first).to_have_attribute("data-status", "400")
    bad.click()  # collapse the first refusal, open the newest one
    expect(detail).to_have_count(0)
    rows.first.click()
    expect(tab.locator("#req-body tr.expanded-row")).to_have_count(1)
    expect(tab.locator("#req-body tr.expanded-row pre.json").first).to_contain_text('"batch_size": 3')
    screenshot(tab, "requests")

    assert api.post("/__mock__/reset", json={}).status_code == 200  # a reset elsewhere empties the view
    expect(rows).to_have_count(0, timeout=WAIT_MS)
    expect(tab.locator("#req-empty")).to_be_visible()


@pytest.mark.e2e
@needs_browser
def test_a_refusal_shows_the_field_it_broke(tab: Page, api: httpx.Client, base_url: str) -> None:
    """The journal's ``error`` fact (message, param) is shown on the row and in its detail.

    The fact is added to the journal's answer here when this server does not keep it yet.
    """
    from playwright.sync_api import Route, expect

    refused = api.post(VIDEO, json={"prompt": "x", "image_urls": [FRAME], "task_id": "task_1"}, headers=AUTH)
    assert refused.status_code == 400
    error = refused.json()["error"]

    def with_error(route: Route) -> None:
        answer = route.fetch()
        entries = answer.json()
        for e in entries["requests"]:
            if e["status"] == 400:
                e.setdefault("error", error)
        route.fulfill(response=answer, json=entries)

    tab.route(re.compile(r"/__mock__/requests(\?.*)?$"), with_error)
    open_view(tab, base_url, "requests")
    bad = tab.locator("#req-body tr.refused")
    expect(bad).to_have_count(1, timeout=WAIT_MS)
    expect(bad.locator(".why")).to_contain_text(error["param"])
    expect(bad.locator(".why")).to_contain_text(error["message"])
    bad.click()
    box = tab.locator("#req-body tr.expanded-row .error-box")
    expect(box).to_contain_text(f"field {error['param']}")
    expect(box).to_contain_text(error["message"])
    expect(box).to_contain_text(error["type"])


@pytest.mark.e2e
@needs_browser
def test_steering_adds_a_fault_and_moves_the_clock(tab: Page, api: httpx.Client, base_url: str) -> None:
    from playwright.sync_api import expect

    open_view(tab, base_url, "steering")
    expect(tab.locator("#clock-state")).to_have_text("frozen", timeout=WAIT_MS)
    before = api.get("/__mock__/clock").json()["now"]
    tab.fill("#advance-seconds", "5")
    tab.locator("#advance-form button").click()
    expect(tab.locator("#clock-msg")).to_have_text("")
    tab.wait_for_function(
        "before => Number(document.querySelector('#clock-unix').dataset.now) >= before + 5",
        arg=before,
        timeout=WAIT_MS,
    )
    assert api.get("/__mock__/clock").json()["now"] == pytest.approx(before + 5, abs=1e-6)

    expect(tab.locator("#rule-scenario option")).to_have_count(len(api.get("/__mock__/scenarios").json()["catalogue"]))
    tab.select_option("#rule-scenario", "error_503")
    tab.select_option('#rule-form select[name="endpoint"]', "video")
    tab.fill('#rule-form input[name="times"]', "1")
    tab.locator('#rule-form button[type="submit"]').click()
    expect(tab.locator("#rule-msg")).to_contain_text("Added rule_", timeout=WAIT_MS)
    expect(tab.locator("#rules-table tbody tr")).to_have_count(1)
    rules = api.get("/__mock__/scenarios").json()["rules"]
    assert [(r["scenario"], r["endpoint"], r["times"]) for r in rules] == [("error_503", "video", 1)]

    body = {"prompt": "p", "image_urls": [FRAME]}
    assert api.post(VIDEO, json=body, headers=AUTH).status_code == 503
    assert api.post(VIDEO, json=body, headers=AUTH).status_code == 200

    tab.select_option("#rule-scenario", "latency")  # a rule with parameters, then removed from the page
    tab.fill('#rule-params input[data-param="ms"]', "250")
    tab.select_option('#rule-form select[name="endpoint"]', "poll")
    tab.fill('#rule-form input[name="times"]', "")
    tab.locator('#rule-form button[type="submit"]').click()
    expect(tab.locator("#rules-table tbody tr")).to_have_count(2, timeout=WAIT_MS)
    latency = next(r for r in api.get("/__mock__/scenarios").json()["rules"] if r["scenario"] == "latency")
    assert (latency["params"], latency["times"]) == ({"ms": "250"}, None)
    screenshot(tab, "steering")
    tab.locator(f'#rules-table [data-delete="{latency["id"]}"]').click()
    expect(tab.locator("#rules-table tbody tr")).to_have_count(1, timeout=WAIT_MS)
    assert [r["id"] for r in api.get("/__mock__/scenarios").json()["rules"]] == [rules[0]["id"]]

    tab.locator("#clock-toggle").click()
    expect(tab.locator("#clock-state")).to_have_text("running", timeout=WAIT_MS)
    assert api.get("/__mock__/clock").json()["frozen"] is False

    submit(api)
    reset = tab.locator("#reset-all")
    reset.click()
    expect(reset).to_have_text("Click again to reset everything")
    reset.click()
    expect(tab.locator("#reset-msg")).to_have_text("Everything was reset", timeout=WAIT_MS)
    assert api.get("/__mock__/tasks").json()["tasks"] == []
    assert api.get("/__mock__/scenarios").json()["rules"] == []


@pytest.mark.e2e
@needs_browser
def test_costs_match_the_ledger(tab: Page, api: httpx.Client, base_url: str) -> None:
    from playwright.sync_api import expect

    submit(api, batch_size=4)
    submit(api, IMAGINE, prompt="a red fox")
    submit(api, token="second", video_type="vid_1.1_i2v_720")
    submit(api, token="second", prompt="[mock:moderation] refunded")
    advance(api, 10)

    open_view(tab, base_url, "costs")
    form = tab.locator("#balance-form")
    form.locator('input[name="who"]').fill("second")
    form.locator('input[name="balance"]').fill("100")
    form.locator("button").click()
    expect(tab.locator("#balance-msg")).to_contain_text("acct_", timeout=WAIT_MS)

    ledger = api.get("/__mock__/ledger").json()
    second = api.get("/__mock__/ledger", params={"token": "second"}).json()["accounts"]
    assert next(iter(second.values()))["balance"] == 100
    rate = ledger.get("usd_per_credit", 0.1)
    assert len(ledger["accounts"]) == 2
    expect(tab.locator("#cost-accounts tbody tr")).to_have_count(2, timeout=WAIT_MS)
    expect(tab.locator('#cost-accounts [data-field="balance"][data-value="100"]')).to_have_count(1, timeout=WAIT_MS)

    def cell(selector: str, field: str) -> Any:
        return tab.locator(f'{selector} [data-field="{field}"]')

    expect(tab.locator("#stat-total [data-credits]")).to_have_text(credits(ledger["total_spent"]))
    expect(tab.locator("#stat-total [data-usd]")).to_have_text(usd(ledger["total_spent"] * rate))
    for name, acct in ledger["accounts"].items():
        line = f'#cost-accounts tr[data-account="{name}"]'
        for field in ("charged", "refunded", "spent"):
            expect(cell(line, field)).to_have_text(credits(acct[field]))
            assert float(cell(line, field).get_attribute("data-value") or "nan") == acct[field]
        expect(cell(line, "tasks")).to_have_text(str(acct["tasks"]))
        expect(cell(line, "usd")).to_have_text(usd(acct["spent"] * rate))
        for key, amount in acct["by_price_key"].items():
            key_line = f'#cost-keys tr[data-account="{name}"][data-key="{key}"]'
            expect(cell(key_line, "credits")).to_have_text(credits(amount))
            expect(cell(key_line, "usd")).to_have_text(usd(amount * rate))
    refunds = [e for e in ledger["entries"] if e["kind"] == "refund"]
    assert len(refunds) == 1
    expect(tab.locator("#cost-entries tbody tr")).to_have_count(len(ledger["entries"]))
    screenshot(tab, "costs")


@pytest.mark.e2e
@needs_browser
def test_costs_show_what_each_key_of_a_shared_account_spent(tab: Page, api: httpx.Client, base_url: str) -> None:
    from playwright.sync_api import expect

    submit(api, token="shared-a", batch_size=2)
    submit(api, token="shared-b")
    (name, account), *others = api.get("/__mock__/ledger").json()["accounts"].items()
    assert others == [] and account["spent"] == 6
    open_view(tab, base_url, "costs")
    keys = tab.locator(f'#cost-accounts tr[data-account="{name}"] [data-keys] [data-key-id]')
    expect(keys).to_have_count(2, timeout=WAIT_MS)
    shown = {keys.nth(i).get_attribute("data-key-id"): keys.nth(i).get_attribute("data-value") for i in range(2)}
    balances = {
        token: api.get("/v1/balance", headers={"Authorization": f"Bearer {token}"}).json()["used_balance"]
        for token in ("shared-a", "shared-b")
    }
    assert sorted(float(v or "nan") for v in shown.values()) == sorted(balances.values()) == [2.0, 4.0]
    assert set(shown) == set(account["by_key"])


@pytest.mark.e2e
@needs_browser
def test_control_token_is_sent_and_asked_for(tab: Page, api: httpx.Client, base_url: str) -> None:
    """``#token=`` is kept in sessionStorage (never localStorage), sent as a bearer token, and removed
    from the address bar; ``?token=`` still works; a 401 asks for one."""
    from playwright.sync_api import Route, expect

    seen: list[str | None] = []
    tab.on(
        "request",
        lambda r: seen.append(r.headers.get("authorization")) if urlsplit(r.url).path == "/__mock__/clock" else None,
    )
    tab.goto(f"{base_url}/__mock__/#token=s3cret")
    tab.wait_for_function("() => document.documentElement.dataset.tasksRendered === '1'", timeout=WAIT_MS)
    assert "token" not in tab.url
    assert tab.evaluate("sessionStorage.getItem('mockserver.controlToken')") == "s3cret"
    assert tab.evaluate("localStorage.getItem('mockserver.controlToken')") is None
    assert seen and all(h == "Bearer s3cret" for h in seen)
    tab.goto(f"{base_url}/__mock__/?token=q1#requests")
    tab.wait_for_function("() => sessionStorage.getItem('mockserver.controlToken') === 'q1'", timeout=WAIT_MS)
    assert "token" not in tab.url and tab.url.endswith("#requests")

    def refuse(route: Route) -> None:
        route.fulfill(status=401, content_type="application/json", body='{"error": {"message": "token required"}}')

    tab.route("**/__mock__/clock", refuse)
    expect(tab.locator("#token-form")).to_be_visible(timeout=WAIT_MS)
    tab.unroute("**/__mock__/clock")
    tab.fill("#token-input", "other")
    tab.locator("#token-form button").click()
    expect(tab.locator("#banner")).to_be_hidden(timeout=WAIT_MS)
    assert tab.evaluate("sessionStorage.getItem('mockserver.controlToken')") == "other"
    assert tab.evaluate("localStorage.getItem('mockserver.controlToken')") is None


def credits(x: float) -> str:
    """As the page writes credits: grouped, at most two decimals."""
    text = f"{x:,.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def usd(x: float) -> str:
    return ("−$" if x < 0 else "$") + f"{abs(x):,.2f}"
