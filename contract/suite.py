"""The contract checks: each documented rule as a named check against a target.

Free checks (refusals, unknown-task polls, missing tokens) always run. Paid
checks run within the budget, in the cheapest form that still proves the rule
(480p, motion low, the smallest batch). Open points of the documentation are
probed and reported as INFO, never failed.
"""

from __future__ import annotations

import base64
import contextlib
import struct
import zlib
from collections.abc import Callable
from typing import Any

import httpx

from .report import FAIL, INFO, PASS, SKIP, Report
from .target import IMAGINE, STATUS_RANK, VIDEO, BudgetExhausted, Target, TaskState, read_task

MiB = 1024 * 1024
UNKNOWN_TASK = "task_01KV52C0TEJSYZMCG0NCS4YWKK"
PRICE_480 = "midjourney@video"
PRICE_IMAGINE = "midjourney@imagine-relax"


def tiny_png(size: int = 16) -> bytes:
    """A valid PNG of ``size``×``size`` grey pixels, made here (no file, no network)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + b"\x80" * size for _ in range(size))
    header = struct.pack(">IIBBBBB", size, size, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


DEFAULT_FRAME = "data:image/png;base64," + base64.b64encode(tiny_png()).decode()


def error_shape(response: httpx.Response) -> str:
    """Which documented error body the response uses, or what it is instead."""
    try:
        body = response.json()
    except ValueError:
        return f"not JSON ({response.headers.get('content-type', 'no content type')})"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        if {"message", "type", "code"} <= set(error):
            return "openai-style error body"
        return "{error: {…}} without message/type/code"
    if isinstance(body, dict) and body.get("success") is False and "message" in body:
        return "{success: false, message}"
    if isinstance(body, dict) and "code" in body and "data" in body:
        return "{code, data} envelope"
    return "unrecognised JSON"


def has_error_body(response: httpx.Response) -> bool:
    shape = error_shape(response)
    return shape.startswith("openai-style") or shape.startswith("{success: false")


class Suite:
    def __init__(
        self,
        target: Target,
        report: Report,
        *,
        frame_url: str = DEFAULT_FRAME,
        other_token: str | None = None,
        log: Callable[[str], None] = lambda line: None,
    ) -> None:
        self.t = target
        self.r = report
        self.frame = frame_url
        self.other_token = other_token
        self.log = log
        self.dialects: set[str] = set()
        self.error_shapes: set[str] = set()
        self.done_task: str | None = None

    def cheap(self, **fields: Any) -> dict[str, Any]:
        return {"prompt": "contract check: a slow pan", "image_urls": [self.frame], "motion": "low", **fields}

    # -- free ----------------------------------------------------------------------------------

    def refusals(self) -> None:
        self.log("== documented refusals (free)")
        oversize = "data:image/png;base64," + base64.b64encode(b"\x00" * (12 * MiB + 3)).decode()
        cases: list[tuple[str, str, Any, bytes | None]] = [
            ("refuse.no_frame", "no pure text-to-video: image_urls or task_id is required → 400",
             {"prompt": "a cat"}, None),
            ("refuse.frame_and_task", "image_urls and task_id are mutually exclusive → 400",
             self.cheap(task_id=UNKNOWN_TASK), None),
            ("refuse.two_images", "image_urls: the start frame, exactly 1 image → 400",
             self.cheap(image_urls=[self.frame, self.frame]), None),
            ("refuse.empty_prompt", "prompt empty without task_id → 400", self.cheap(prompt=""), None),
            ("refuse.motion", "motion is low / high → 400 otherwise", self.cheap(motion="medium"), None),
            ("refuse.animate_mode", "animate_mode is manual / auto → 400 otherwise",
             self.cheap(animate_mode="magic"), None),
            ("refuse.auto_without_task", "animate_mode=auto requires task_id and index → 400",
             self.cheap(animate_mode="auto"), None),
            ("refuse.auto_without_index", "animate_mode=auto requires task_id and index → 400",
             {"task_id": UNKNOWN_TASK, "animate_mode": "auto", "motion": "low"}, None),
            ("refuse.index_above_3", "index is 0–3 → 400 otherwise", {"task_id": UNKNOWN_TASK, "index": 4}, None),
            ("refuse.index_below_0", "index is 0–3 → 400 otherwise", {"task_id": UNKNOWN_TASK, "index": -1}, None),
            ("refuse.oversize_frame", "the first frame is ≤ 12 MiB → 400", self.cheap(image_urls=[oversize]), None),
            ("refuse.malformed_json", "bad JSON → 400", None, b'{"prompt": "a cat", "image_urls": ['),
        ]  # fmt: skip
        for value in ("vid_1.1_i2v_extend_480", "vid_1.1_i2v_extend_720", "vid_1.1_extend", "vid_1.1_i2v_1080"):
            cases.append(
                (f"refuse.video_type.{value}", "only the four documented video_type values; extend refused → 400",
                 self.cheap(video_type=value), None)
            )  # fmt: skip
        for rule, doc, body, raw in cases:
            try:
                response = self.t.refused_submit(body, raw=raw)
            except BudgetExhausted as exc:
                self.r.add(rule, doc, f"not sent: {exc}", SKIP)
                continue
            self._refused(rule, doc, response, 400)
        missing = self.t.send("POST", VIDEO, json=self.cheap())
        self._refused("auth.missing_token", "no bearer token → 401 authentication_error", missing, 401)
        unknown = self.t.get(f"/v1/tasks/{UNKNOWN_TASK}")
        self._refused("poll.unknown_task", "no such task (or expired) → 404", unknown, 404)

    def _refused(self, rule: str, doc: str, response: httpx.Response, status: int) -> None:
        shape = error_shape(response)
        self.error_shapes.add(shape)
        observed = f"{response.status_code}, {shape}"
        if response.status_code == 200:
            observed += " (accepted: this cost a task)"
        self.r.check(rule, doc, response.status_code == status and has_error_body(response), observed)

    # -- paid ----------------------------------------------------------------------------------

    def plan(self) -> list[tuple[str, int, str, int]]:
        """The paid work, in the order it runs within the budget: (what, tasks, price key, units)."""
        return [
            ("lifecycle, batch_size 1", 1, PRICE_480, 1),
            ("reuse: imagine task", 1, PRICE_IMAGINE, 1),
            ("reuse: video from task_id + index", 1, PRICE_480, 1),
            ("lifecycle, batch_size 2", 1, PRICE_480, 2),
            ("lifecycle, batch_size 4", 1, PRICE_480, 4),
            ("open point: batch_size 3 (strict or coerce)", 1, PRICE_480, 1),
        ]

    def lifecycle(self, batch: int) -> None:
        rule = f"lifecycle.batch{batch}"
        self.log(f"== lifecycle, batch_size {batch} (paid)")
        try:
            response = self.t.paid_submit(VIDEO, self.cheap(batch_size=batch), PRICE_480, batch)
        except BudgetExhausted as exc:
            self.r.add(rule, f"a batch of {batch} reaches SUCCESS with {batch} video_urls", f"skipped: {exc}", SKIP)
            return
        task_id = self._accepted(f"{rule}.submit", response)
        if task_id is None:
            return
        states = self.t.poll_until_final(task_id)
        self._lifecycle_checks(rule, batch, states)
        if states[-1].status == "SUCCESS":
            self.done_task = task_id
            self._downloads(rule, states[-1].urls)
            mj = self.t.get(f"/v1/midjourney/{task_id}")
            mj_state = read_task(mj.json()) if mj.status_code == 200 else None
            self.r.check(
                f"{rule}.midjourney_view",
                "GET /v1/midjourney/{id} answers the Midjourney-style body (uppercase status, video_urls)",
                mj_state is not None and mj_state.dialect == "mj" and len(mj_state.urls) == batch,
                f"{mj.status_code}, {mj_state.dialect if mj_state else '-'}, "
                f"{len(mj_state.urls) if mj_state else 0} url(s)",
            )

    def _accepted(self, rule: str, response: httpx.Response) -> str | None:
        body: Any = None
        with contextlib.suppress(ValueError):
            body = response.json()
        task_id = None
        if isinstance(body, dict) and isinstance(body.get("data"), list) and body["data"]:
            first = body["data"][0]
            if isinstance(first, dict):
                task_id = first.get("task_id")
        ok = response.status_code == 200 and body.get("code") == 200 and isinstance(task_id, str)
        self.r.check(
            rule,
            'submission answers {"code": 200, "data": [{"status": "submitted", "task_id": …}]}',
            ok,
            f"{response.status_code}, {response.text[:120]}",
        )
        return task_id if ok else None

    def _lifecycle_checks(self, rule: str, batch: int, states: list[TaskState]) -> None:
        final = states[-1]
        self.dialects.add(final.dialect)
        statuses = [s.status for s in states]
        self.r.check(
            f"{rule}.success", "the task reaches SUCCESS", final.status == "SUCCESS", " → ".join(_dedupe(statuses))
        )
        self.r.check(
            f"{rule}.video_urls_length",
            f"video_urls has exactly batch_size = {batch} entries",
            len(final.urls) == batch,
            f"{len(final.urls)} url(s)",
        )
        self.r.check(
            f"{rule}.video_url_first",
            "video_url is the first of video_urls",
            bool(final.urls) and final.first_url == final.urls[0],
            f"video_url {'= video_urls[0]' if final.urls and final.first_url == final.urls[0] else '≠ video_urls[0]'}",
        )
        ranks = [STATUS_RANK.get(s, -1) for s in statuses]
        self.r.check(
            f"{rule}.status_forward",
            "statuses only move forward (SUBMITTED → IN_PROGRESS → SUCCESS/FAILURE), all documented",
            -1 not in ranks and ranks == sorted(ranks),
            " → ".join(_dedupe(statuses)),
        )
        progress = [s.progress for s in states]
        self.r.check(
            f"{rule}.progress_rises",
            "progress is 0–100 and never falls",
            all(0 <= p <= 100 for p in progress) and progress == sorted(progress),
            " → ".join(str(p) for p in _dedupe(progress)),
        )

    def _downloads(self, rule: str, urls: list[str]) -> None:
        problems = []
        for url in urls:
            response = self.t.send("GET", url)
            kind = response.headers.get("content-type", "")
            if response.status_code != 200 or not kind.startswith("video/mp4") or response.content[4:8] != b"ftyp":
                problems.append(f"{url.rsplit('/', 1)[-1]}: {response.status_code} {kind}")
        self.r.check(
            f"{rule}.media",
            "each result URL downloads an MP4 (video/mp4, ftyp box)",
            not problems,
            "; ".join(problems) or f"{len(urls)} MP4 file(s) downloaded",
        )

    def reuse(self) -> None:
        rule = "reuse"
        self.log("== reuse of an imagine task (paid)")
        prompt = "contract check: a red fox in the snow"
        try:
            response = self.t.paid_submit(IMAGINE, {"prompt": prompt, "speed": "relax"}, PRICE_IMAGINE, 1)
        except BudgetExhausted as exc:
            self.r.add(rule, "an imagine task in SUCCESS can be animated by task_id + index", f"skipped: {exc}", SKIP)
            return
        parent = self._accepted(f"{rule}.imagine_submit", response)
        if parent is None:
            return
        final = self.t.poll_until_final(parent, "/v1/midjourney/")[-1]
        ok = self.r.check(
            f"{rule}.imagine_success",
            "imagine reaches SUCCESS with grid_image_url and four image_urls",
            final.status == "SUCCESS" and len(final.urls) == 4 and bool(final.raw.get("grid_image_url")),
            f"{final.status}, {len(final.urls)} image(s)",
        )
        if not ok:
            return
        try:
            child = self.t.paid_submit(VIDEO, {"task_id": parent, "index": 1, "motion": "low"}, PRICE_480, 1)
        except BudgetExhausted as exc:
            self.r.add(f"{rule}.video", "task_id + index animates the imagine image", f"skipped: {exc}", SKIP)
            return
        child_id = self._accepted(f"{rule}.video_submit", child)
        if child_id is None:
            return
        done = self.t.poll_until_final(child_id, "/v1/midjourney/")[-1]
        self.r.check(
            f"{rule}.video_success",
            "a video from task_id + index reaches SUCCESS with one clip",
            done.status == "SUCCESS" and len(done.urls) == 1,
            f"{done.status}, {len(done.urls)} url(s)",
        )
        self.r.check(
            f"{rule}.prompt_inherited",
            "an empty prompt is inherited from the parent task",
            done.raw.get("prompt") == prompt,
            f"prompt {done.raw.get('prompt')!r}",
        )

    # -- open points ------------------------------------------------------------------------------

    def batch_size_policy(self) -> None:
        rule = "open.batch_size_policy"
        doc = "table: other values treated as 1; notes: strictly validated as 1/2/4"
        try:
            response = self.t.paid_submit(VIDEO, self.cheap(batch_size=3), PRICE_480, 1)
        except BudgetExhausted as exc:
            self.r.add(rule, doc, f"not probed: {exc}", SKIP)
            return
        if response.status_code == 400:
            self.r.add(rule, doc, "strict: batch_size 3 refused with 400", INFO)
            return
        task_id = self._accepted(f"{rule}.submit", response)
        if task_id is None:
            self.r.add(rule, doc, f"neither reading: {response.status_code}", FAIL)
            return
        final = self.t.poll_until_final(task_id)[-1]
        self.r.add(rule, doc, f"coerce: batch_size 3 accepted, {len(final.urls)} clip(s) made", INFO)

    def open_points(self) -> None:
        self.log("== open points of the documentation")
        dialect = ", ".join(sorted(self.dialects)) or "not seen (no paid task ran)"
        readings = {"mj": "the video page's Midjourney-style body", "unified": "the tasks page's envelope"}
        self.r.add(
            "open.task_view_dialect",
            "the video page shows the Midjourney-style body at /v1/tasks/{id}; the tasks page an envelope",
            "; ".join(readings.get(d, d) for d in sorted(self.dialects)) or dialect,
            INFO if self.dialects else SKIP,
        )
        self.r.add(
            "open.error_body",
            "the 400 body is not shown on the video page; client scripts read {error: {…}} or {success: false}",
            "; ".join(sorted(self.error_shapes)) or "no refusal seen",
            INFO,
        )
        self._other_account()

    def _other_account(self) -> None:
        rule = "open.other_account_task"
        doc = "another account's task → 403 (tasks page)"
        other = self.other_token or ("contract-other-account" if self.t.fake else None)
        if self.done_task is None or other is None:
            why = "no finished task to ask about" if self.done_task is None else "give --other-token to probe it"
            self.r.add(rule, doc, f"not probed: {why}", SKIP)
            return
        response = self.t.get(f"/v1/tasks/{self.done_task}", token=other)
        self.r.add(rule, doc, f"{response.status_code}", INFO if response.status_code in (403, 404) else FAIL)


def _dedupe(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if not out or out[-1] != v:
            out.append(v)
    return out


__all__ = ["DEFAULT_FRAME", "FAIL", "INFO", "PASS", "SKIP", "Suite", "error_shape", "tiny_png"]
