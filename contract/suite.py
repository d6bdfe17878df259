"""The contract checks: each documented rule as a named check against a target, registered in ``CHECKS``.

``CHECKS`` is the run, in order. Free checks (refusals, uploads, unknown-task
polls, missing tokens) always run. A paid check says what it spends (tasks,
price key, units): the plan, the budget announcement and the run order are all
read from that one list, and a paid check the budget cannot cover is skipped
with its own rule. Paid checks use the cheapest form that still proves the rule
(480p, motion low, the smallest batch). Open points of the documentation are
probed and reported as INFO, with the reading the target follows.

Every refusal probe changes one field of a body the target accepts (the start
frame body of ``lifecycle.batch1`` or the task body of ``reuse.video``), so it
is refused for the rule it probes and for no other reason; probes that need a
real imagine task run after the reuse check has paid for one.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from .frames import DEFAULT_FRAME, PNG, data_url, padded_png, tiny_png
from .readings import Readings, error_of, error_param, error_shape, has_error_body, param_field
from .report import FAIL, INFO, SKIP, Report
from .target import (
    IMAGINE,
    MIDJOURNEY,
    STATUS_RANK,
    TASKS,
    VIDEO,
    BudgetExhausted,
    Followed,
    Target,
    TaskState,
    read_task,
)

MiB = 1024 * 1024
UNKNOWN_TASK = "task_01KV52C0TEJSYZMCG0NCS4YWKK"
PRICE_480 = "midjourney@video"
PRICE_IMAGINE = "midjourney@imagine"  # relax, the default speed
PARENT_PROMPT = "contract check: a red fox in the snow"
OVERSIZE_FRAME = 12 * MiB + 1024  # the frame limit is 12 MiB
DECIMAL_OVERSIZE = 20_000_001  # the upload page's "20MB" read as decimal, plus one byte
BINARY_OVERSIZE = 20 * MiB + 1  # ... read as binary (the fake's default), plus one byte
OVERSIZE_DOC = "the first frame is ≤ 12 MiB → 400"


@dataclass(frozen=True)
class Probe:
    """A request the documentation says must be refused, and the fields its rule is about."""

    rule: str
    doc: str
    body: Any
    fields: tuple[str, ...]
    raw: bytes | None = None


class Suite:
    def __init__(
        self,
        target: Target,
        report: Report,
        *,
        frame_url: str = DEFAULT_FRAME,
        other_token: str | None = None,
    ) -> None:
        self.t = target
        self.r = report
        self.frame = frame_url
        self.other_token = other_token
        self.readings = Readings()
        self.done_task: str | None = None  # a finished video task of ours, for the other-account probe
        self.parent: str | None = None  # an imagine task of ours in SUCCESS, for reuse and its refusals

    def cheap(self, **fields: Any) -> dict[str, Any]:
        """The start-frame body (``lifecycle.batch1`` sends it), with ``fields`` changed."""
        return {"prompt": "contract check: a slow pan", "image_urls": [self.frame], "motion": "low", **fields}

    def from_task(self, **fields: Any) -> dict[str, Any]:
        """The task body (``reuse.video`` sends it), with ``fields`` changed."""
        return {"task_id": self.parent, "index": 1, "motion": "low", **fields}

    # -- free: refusals ------------------------------------------------------------------------

    def refusals(self) -> None:
        no_frame = {k: v for k, v in self.cheap().items() if k != "image_urls"}
        probes = [
            Probe("refuse.no_frame", "no pure text-to-video: image_urls or task_id is required → 400",
                  no_frame, ("image_urls", "task_id")),
            Probe("refuse.two_images", "image_urls: the start frame, exactly 1 image → 400",
                  self.cheap(image_urls=[self.frame, self.frame]), ("image_urls",)),
            Probe("refuse.empty_prompt", "prompt empty without task_id → 400", self.cheap(prompt=""), ("prompt",)),
            Probe("refuse.motion", "motion is low / high → 400 otherwise", self.cheap(motion="medium"), ("motion",)),
            Probe("refuse.animate_mode", "animate_mode is manual / auto → 400 otherwise",
                  self.cheap(animate_mode="magic"), ("animate_mode",)),
            Probe("refuse.auto_without_task", "animate_mode=auto requires task_id and index → 400",
                  self.cheap(animate_mode="auto", index=0), ("task_id", "animate_mode")),
        ]  # fmt: skip
        oversize = self._oversize_frame()
        if isinstance(oversize, Probe):
            probes.append(oversize)
        else:
            self.r.add("refuse.oversize_frame", OVERSIZE_DOC, f"not sent: {oversize}", SKIP)
        probes.append(
            Probe("refuse.malformed_json", "bad JSON → 400", None, (), b'{"prompt": "a cat", "image_urls": [')
        )
        for value in ("vid_1.1_i2v_extend_480", "vid_1.1_i2v_extend_720", "vid_1.1_extend", "vid_1.1_i2v_1080"):
            probes.append(
                Probe(f"refuse.video_type.{value}", "only the four documented video_type values; extend refused → 400",
                      self.cheap(video_type=value), ("video_type",))
            )  # fmt: skip
        self._send(probes)
        missing = self.t.send("POST", VIDEO, json=self.cheap())
        self._refused("auth.missing_token", "no bearer token → 401 authentication_error", missing, 401, ())
        self._auth_error_type(missing)
        unknown = self.t.get(f"{TASKS}{UNKNOWN_TASK}")
        self._refused("poll.unknown_task", "no such task (or expired) → 404", unknown, 404, ())

    def _oversize_frame(self) -> Probe | str:
        """A real PNG just over 12 MiB, in the form of the start frame: a ``data:`` URL when the frame is one,
        else an uploaded image's URL (its size is then the only way it differs from an accepted frame);
        or why there is none."""
        png = padded_png(OVERSIZE_FRAME)
        url: Any = data_url(png) if self.frame.startswith("data:") else None
        if url is None:
            response = self.t.upload(png, PNG, "contract-check-oversize.png")
            answer = _json(response)
            url = answer.get("url") if response.status_code == 200 and isinstance(answer, dict) else None
            if not isinstance(url, str):
                return f"the oversize frame could not be uploaded ({response.status_code})"
        return Probe("refuse.oversize_frame", OVERSIZE_DOC, self.cheap(image_urls=[url]), ("image_urls",))

    def parent_refusals(self) -> None:
        """Refusals about ``task_id`` and ``index``, sent with a real imagine task in SUCCESS: with an
        unknown one they would be refused for that alone, whatever the target does with ``index``."""
        probes = [
            Probe("refuse.frame_and_task", "image_urls and task_id are mutually exclusive → 400",
                  {**self.cheap(), **self.from_task()}, ("image_urls", "task_id")),
            Probe("refuse.auto_without_index", "animate_mode=auto requires task_id and index → 400",
                  {k: v for k, v in self.from_task(animate_mode="auto").items() if k != "index"},
                  ("index", "animate_mode")),
            Probe("refuse.index_above_3", "index is 0–3 → 400 otherwise", self.from_task(index=4), ("index",)),
            Probe("refuse.index_below_0", "index is 0–3 → 400 otherwise", self.from_task(index=-1), ("index",)),
        ]  # fmt: skip
        if self.parent is None:
            why = "needs an imagine task in SUCCESS (the paid reuse check); with an unknown task_id it proves nothing"
            for probe in probes:
                self.r.add(probe.rule, probe.doc, f"not sent: {why}", SKIP)
            return
        self._send(probes)

    def _send(self, probes: list[Probe]) -> None:
        for probe in probes:
            try:
                response = self.t.refused_submit(probe.body, raw=probe.raw)
            except BudgetExhausted as exc:
                self.r.add(probe.rule, probe.doc, f"not sent: {exc}", SKIP)
                continue
            self._refused(probe.rule, probe.doc, response, 400, probe.fields)

    def _refused(self, rule: str, doc: str, response: httpx.Response, status: int, fields: tuple[str, ...]) -> None:
        self.readings.note_error(rule, response, fields)
        observed = f"{response.status_code}, {error_shape(response)}"
        param = error_param(response)
        named = param_field(param)
        if fields and named is not None:
            other = "" if named in fields else f" (not {' / '.join(fields)}: refused for another reason?)"
            observed += f", param {param}{other}"
        if response.status_code == 200:
            observed += " (accepted: this cost a task)"
        self.r.check(rule, doc, response.status_code == status and has_error_body(response), observed)

    def _auth_error_type(self, response: httpx.Response) -> None:
        error = error_of(response)
        doc = "endpoint pages: 401 authentication_error; seen live without a key: type apimart_error"
        if error is None:
            self.r.add("open.auth_error_type", doc, f"{response.status_code}, {error_shape(response)}", INFO)
            return
        message = str(error.get("message", ""))[:60]
        observed = f"type {error.get('type')!r}, code {error.get('code')!r}, message {message!r}"
        self.r.add("open.auth_error_type", doc, observed, INFO)

    # -- free: uploads -------------------------------------------------------------------------

    def uploads(self) -> None:
        png = tiny_png()
        response = self.t.upload(png, PNG, "contract-check.png")
        answer = _json(response)
        answer = answer if isinstance(answer, dict) else {}
        ok = (
            response.status_code == 200
            and str(answer.get("url", "")).startswith(("http://", "https://"))
            and isinstance(answer.get("filename"), str)
            and answer.get("content_type") == PNG
            and answer.get("bytes") == len(png)
            and isinstance(answer.get("created_at"), int)
        )
        shown = {k: answer.get(k) for k in ("content_type", "bytes")} if response.status_code == 200 else None
        self.r.check(
            "upload.image",
            "POST /v1/uploads/images (multipart file) answers {url, filename, content_type, bytes, created_at}",
            ok,
            f"{response.status_code}, {shown if shown is not None else error_shape(response)}",
        )
        self._upload_sniffing(png)
        self._upload_size_limit()

    def balances(self) -> None:
        """The account pages' answer on all four paths; an unknown key's form is an open point."""
        for path in ("/v1/balance", "/balance", "/v1/user/balance", "/user/balance"):
            response = self.t.get(path)
            answer = _json(response)
            answer = answer if isinstance(answer, dict) else {}
            limited = answer.get("unlimited_quota") is False and _number(answer.get("remain_balance"))
            unlimited = answer.get("unlimited_quota") is True and answer.get("remain_balance") == -1
            ok = (
                response.status_code == 200
                and answer.get("success") is True
                and _number(answer.get("used_balance"))
                and (limited or unlimited)
            )
            self.r.check(
                f"balance.shape {path}",
                f"GET {path} answers {{success, remain_balance, used_balance, unlimited_quota}} (-1 when unlimited)",
                bool(ok),
                f"{response.status_code}, {dict(answer) if response.status_code == 200 else error_shape(response)}",
            )
        unknown = self.t.get("/v1/balance", token="contract-no-such-key")  # noqa: S106 - not a key
        body = _json(unknown)
        doc = 'token page: an unknown key is a 200 {"success": false, "message": …} ("Token Not Found")'
        if unknown.status_code == 200 and isinstance(body, dict) and body.get("success") is False:
            self.r.add("open.balance_unknown_key", doc, f"200, message {body.get('message')!r}", INFO)
        else:
            self.r.add("open.balance_unknown_key", doc, f"{unknown.status_code}, {error_shape(unknown)}", INFO)

    def _upload_sniffing(self, png: bytes) -> None:
        """The accepted upload again, its part declared ``application/octet-stream`` (as Go clients send it)."""
        rule = "open.upload_sniffing"
        doc = "uploads page: content_type is the type detected from the bytes; Go clients declare octet-stream"
        response = self.t.upload(png, "application/octet-stream", "contract-check.png")
        answer = _json(response)
        if response.status_code == 200 and isinstance(answer, dict):
            content_type = answer.get("content_type")
            if content_type == PNG:
                self.r.add(rule, doc, f"sniffed: accepted, content_type {PNG} (read from the file)", INFO)
            else:
                self.r.add(rule, doc, f"accepted, but content_type {content_type!r} is not the bytes' ({PNG})", FAIL)
        elif response.status_code in (400, 415):
            param = error_param(response)
            self.r.add(rule, doc, f"declared type trusted: {response.status_code}, param {param!r}", INFO)
        else:
            self.r.add(rule, doc, f"neither reading: {response.status_code}, {error_shape(response)}", FAIL)

    def _upload_size_limit(self) -> None:
        """Real PNGs of 20 000 001 bytes and of 20 MiB + 1, declared image/png: only their size can be
        refused, and which of them is says whether "20MB" is decimal or binary (docs/evidence.md, "uploads")."""
        rule = "open.upload_size_limit"
        doc = "uploads page: 'Maximum file size: 20MB', 413 beyond (20 MB or 20 MiB?)"
        decimal = self._upload_refused(DECIMAL_OVERSIZE)
        binary = self._upload_refused(BINARY_OVERSIZE) if isinstance(decimal, bool) else decimal
        problem = next((seen for seen in (decimal, binary) if not isinstance(seen, bool)), None)
        if problem is not None:
            verdict, text = problem
            self.r.add(rule, doc, text, verdict)
        elif decimal and binary:
            self.r.add(rule, doc, "20 MB decimal: 20 000 001 bytes refused (--max-upload-bytes 20000000)", INFO)
        elif binary:
            self.r.add(rule, doc, "20 MiB: 20 000 001 bytes accepted, 20 MiB + 1 refused (the fake's default)", INFO)
        elif decimal:
            self.r.add(rule, doc, "neither reading: 20 000 001 bytes refused but 20 MiB + 1 accepted", FAIL)
        else:
            self.r.add(rule, doc, "no 20 MB limit: 20 MiB + 1 accepted", INFO)

    def _upload_refused(self, size: int) -> bool | tuple[str, str]:
        """Whether an upload of ``size`` bytes is refused for its size (400 or 413) or stored whole;
        otherwise the verdict and text to report instead (no answer, or an answer that is neither)."""
        big = padded_png(size)
        try:
            response = self.t.upload(big, PNG, f"contract-check-{size}.png")
        except httpx.TransportError as exc:
            return INFO, f"no answer to {size} bytes: {type(exc).__name__} (a server may drop a body it will not take)"
        answer = _json(response)
        if response.status_code in (400, 413):
            return True
        if response.status_code == 200 and isinstance(answer, dict) and answer.get("bytes") == len(big):
            return False
        return FAIL, f"neither reading for {size} bytes: {response.status_code}, {error_shape(response)}"

    # -- paid ----------------------------------------------------------------------------------

    def lifecycle(self, batch: int) -> None:
        rule = f"lifecycle.batch{batch}"
        response = self.t.paid_submit(VIDEO, self.cheap(batch_size=batch), PRICE_480, batch)
        task_id = self._accepted(f"{rule}.submit", response)
        if batch == 1 and self.frame.startswith("data:"):
            self._note_data_url_frame(task_id, response)
        if task_id is None:
            return
        if batch == 1:
            self.readings.controls["start-frame body"] = rule
        followed = self.t.follow(task_id)
        states = followed.states
        self._lifecycle_checks(rule, batch, states)
        mj_state = None
        if states[-1].status == "SUCCESS":
            self.done_task = task_id
            self._downloads(rule, states[-1].urls)
            mj = self.t.get(f"{MIDJOURNEY}{task_id}")
            mj_state = read_task(mj.json()) if mj.status_code == 200 else None
            self.r.check(
                f"{rule}.midjourney_view",
                "GET /v1/midjourney/{id} answers the Midjourney-style body (uppercase status, video_urls)",
                mj_state is not None and mj_state.dialect == "mj" and len(mj_state.urls) == batch,
                f"{mj.status_code}, {mj_state.dialect if mj_state else '-'}, "
                f"{len(mj_state.urls) if mj_state else 0} url(s)",
            )
        precise = mj_state.seconds if mj_state is not None else None
        self.readings.note_task(followed, kind="videos", expected=batch, on_tasks_route=True, seconds=precise)

    def _note_data_url_frame(self, task_id: str | None, response: httpx.Response) -> None:
        """Accepted, or refused for the frame itself: a 400 naming ``image_urls``. Any other refusal (a
        balance, a rate limit, a server error) says nothing of the frame, and the reading stays open."""
        param = error_param(response)
        if task_id is not None:
            self.readings.data_url_frame = "accepted"
        elif response.status_code == 400 and isinstance(param, str) and param.startswith("image_urls"):
            self.readings.data_url_frame = f"400 naming {param}"

    def _follow_video(self, task_id: str, clips: int, path: str = TASKS) -> Followed:
        followed = self.t.follow(task_id, path)
        self.readings.note_task(followed, kind="videos", expected=clips, on_tasks_route=path == TASKS)
        return followed

    def _accepted(self, rule: str, response: httpx.Response) -> str | None:
        body = _json(response)
        task_id = None
        if isinstance(body, dict) and isinstance(body.get("data"), list) and body["data"]:
            first = body["data"][0]
            if isinstance(first, dict):
                task_id = first.get("task_id")
        ok = response.status_code == 200 and isinstance(body, dict) and body.get("code") == 200
        ok = ok and isinstance(task_id, str)
        self.r.check(
            rule,
            'submission answers {"code": 200, "data": [{"status": "submitted", "task_id": …}]}',
            ok,
            f"{response.status_code}, {response.text[:120]}",
        )
        return task_id if ok and isinstance(task_id, str) else None

    def _lifecycle_checks(self, rule: str, batch: int, states: list[TaskState]) -> None:
        final = states[-1]
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

    def imagine_parent(self) -> None:
        """The imagine task that ``reuse.video`` animates and the task_id / index refusals name."""
        response = self.t.paid_submit(IMAGINE, {"prompt": PARENT_PROMPT, "speed": "relax"}, PRICE_IMAGINE, 1)
        parent = self._accepted("reuse.imagine_submit", response)
        if parent is None:
            return
        final = self.t.follow(parent, MIDJOURNEY).final
        ok = self.r.check(
            "reuse.imagine_success",
            "imagine reaches SUCCESS with grid_image_url and four image_urls",
            final.status == "SUCCESS" and len(final.urls) == 4 and bool(final.raw.get("grid_image_url")),
            f"{final.status}, {len(final.urls)} image(s)",
        )
        if not ok:
            return
        self.parent = parent
        unified = self.t.get(f"{TASKS}{parent}")  # free: how /v1/tasks/{id} writes the four images
        if unified.status_code == 200:
            state = read_task(unified.json())
            self.readings.note_task(Followed([state], 0.0), kind="images", expected=4, on_tasks_route=True)

    def reuse_video(self) -> None:
        rule = "reuse.video"
        if self.parent is None:
            self.r.add(rule, "task_id + index animates the imagine image", "not sent: no imagine task in SUCCESS", SKIP)
            return
        response = self.t.paid_submit(VIDEO, self.from_task(), PRICE_480, 1)
        child = self._accepted(f"{rule}_submit", response)
        if child is None:
            return
        self.readings.controls["task body"] = rule
        done = self._follow_video(child, 1, MIDJOURNEY).final
        self.r.check(
            f"{rule}_success",
            "a video from task_id + index reaches SUCCESS with one clip",
            done.status == "SUCCESS" and len(done.urls) == 1,
            f"{done.status}, {len(done.urls)} url(s)",
        )
        self.r.check(
            "reuse.prompt_inherited",
            "an empty prompt is inherited from the parent task",
            done.raw.get("prompt") == PARENT_PROMPT,
            f"prompt {done.raw.get('prompt')!r}",
        )

    # -- open points ------------------------------------------------------------------------------

    def batch_size_policy(self) -> None:
        rule, doc = "open.batch_size_policy", BATCH_SIZE_DOC
        response = self.t.paid_submit(VIDEO, self.cheap(batch_size=3), PRICE_480, 1)
        if response.status_code == 400:
            self.readings.note_error(rule, response, ("batch_size",))
            self.readings.batch_size_policy = "strict"
            param = error_param(response)
            self.r.add(rule, doc, f"strict: batch_size 3 refused with 400, param {param!r}", INFO)
            return
        task_id = self._accepted(f"{rule}.submit", response)
        if task_id is None:
            self.r.add(rule, doc, f"neither reading: {response.status_code}", FAIL)
            return
        clips = len(self._follow_video(task_id, 1).final.urls)
        if clips == 1:
            self.readings.batch_size_policy = "coerce"
            self.r.add(rule, doc, "coerce: batch_size 3 accepted, 1 clip made", INFO)
        else:
            self.r.add(rule, doc, f"neither reading: batch_size 3 accepted, {clips} clip(s) made", FAIL)

    def open_points(self) -> None:
        for rule, doc, observed, verdict in self.readings.rows():
            self.r.add(rule, doc, observed, verdict)
        self._other_account()

    def _other_account(self) -> None:
        rule = "open.other_account_task"
        doc = "another account's task → 403 (tasks page)"
        if self.done_task is None or self.other_token is None:
            why = "no finished task to ask about" if self.done_task is None else "give --other-token to probe it"
            self.r.add(rule, doc, f"not probed: {why}", SKIP)
            return
        response = self.t.get(f"{TASKS}{self.done_task}", token=self.other_token)
        self.r.add(rule, doc, f"{response.status_code}", INFO if response.status_code in (403, 404) else FAIL)


BATCH_SIZE_DOC = "table: other values treated as 1; notes: strictly validated as 1/2/4"


@dataclass(frozen=True)
class Check:
    """One step of the run. A paid step says what it spends; when the budget cannot cover it, the
    runner writes ``rule`` as skipped, saying ``doc``."""

    title: str
    run: Callable[[Suite], None]
    tasks: int = 0
    price_key: str = ""
    units: int = 0
    rule: str = ""
    doc: str = ""


def _lifecycle(batch: int) -> Check:
    return Check(
        f"lifecycle, batch_size {batch}",
        lambda suite: suite.lifecycle(batch),
        tasks=1,
        price_key=PRICE_480,
        units=batch,
        rule=f"lifecycle.batch{batch}",
        doc=f"a batch of {batch} reaches SUCCESS with {batch} video_urls",
    )


# The run, in order: the plan, the budget announcement and the order of paid tasks all come from here.
CHECKS: list[Check] = [
    Check("documented refusals (free)", Suite.refusals),
    Check("uploads (free)", Suite.uploads),
    Check("balances (free)", Suite.balances),
    _lifecycle(1),
    Check("reuse: imagine task", Suite.imagine_parent, 1, PRICE_IMAGINE, 1, "reuse",
          "an imagine task in SUCCESS can be animated by task_id + index"),
    Check("reuse: video from task_id + index", Suite.reuse_video, 1, PRICE_480, 1, "reuse.video",
          "task_id + index animates the imagine image"),
    Check("refusals naming the imagine task (free)", Suite.parent_refusals),
    _lifecycle(2),
    _lifecycle(4),
    Check("open point: batch_size 3 (strict or coerce)", Suite.batch_size_policy, 1, PRICE_480, 1,
          "open.batch_size_policy", BATCH_SIZE_DOC),
    Check("open points of the documentation", Suite.open_points),
]  # fmt: skip


def paid_plan() -> list[Check]:
    return [check for check in CHECKS if check.tasks]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _json(response: httpx.Response) -> Any:
    with contextlib.suppress(ValueError):
        return response.json()
    return None


def _dedupe(values: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in values:
        if not out or out[-1] != v:
            out.append(v)
    return out


__all__ = ["CHECKS", "DEFAULT_FRAME", "Check", "Suite", "paid_plan"]
