"""What the run saw of the documentation's open points: the INFO rows, and the calibration file.

The checks note what they see here (the body ``/v1/tasks/{id}`` answered, the
shape of ``result.videos``, the cost fields, each task's time, each refusal's
error body); at the end the readings become report rows and, with
``--write-calibration FILE``, a YAML file of mockserver settings that makes the
fake follow the same readings (``mockserver serve --config FILE``).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from .report import INFO, SKIP
from .target import STATUS_RANK, Followed, as_number, item_urls

# The calibration's keys, in the order they are written; each is a mockserver setting.
CALIBRATION_KEYS = ("task_dialect", "unified_url_shape", "unified_video_items", "batch_size_policy", "task_seconds")
DIALECTS = {"mj": "the video page's Midjourney-style body (mj)", "unified": "the tasks page's envelope (unified)"}
PER_CLIP, SINGLE = "per-clip", "single"


def error_of(response: httpx.Response) -> dict[str, Any] | None:
    """The ``error`` object of an OpenAI-style error body, or None."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else None


def error_param(response: httpx.Response) -> Any:
    """The ``param`` of an OpenAI-style error body, or None."""
    return (error_of(response) or {}).get("param")


def error_shape(response: httpx.Response) -> str:
    """Which documented error body the response uses, or what it is instead."""
    try:
        body = response.json()
    except ValueError:
        return f"not JSON ({response.headers.get('content-type', 'no content type')})"
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        if {"message", "type", "code"} <= set(body["error"]):
            return "openai-style error body"
        return "{error: {…}} without message/type/code"
    if isinstance(body, dict) and body.get("success") is False and "message" in body:
        return "{success: false, message}"
    if isinstance(body, dict) and "code" in body and "data" in body:
        return "{code, data} envelope"
    return "unrecognised JSON"


def has_error_body(response: httpx.Response) -> bool:
    return error_shape(response).startswith(("openai-style", "{success: false"))


def param_field(param: Any) -> str | None:
    """The field an error's ``param`` names (``image_urls[0]`` → ``image_urls``), or None when it names none."""
    if not isinstance(param, str):
        return None
    match = re.match(r"[A-Za-z_][\w-]*", param.strip())
    return match.group(0) if match else None


RETRY_TABLE_CODES = {3, 4, 9, 21, 24}  # the best-practices page's, beside 1/200 (success) and 429


@dataclass(frozen=True)
class ErrorSeen:
    """One refusal's error body, and the fields the rule it probes is about."""

    rule: str
    shape: str
    keys: tuple[str, ...]
    code: Any
    type: Any
    param: str | None
    fields: tuple[str, ...]

    @property
    def param_matches(self) -> bool | None:
        """Whether ``param`` names one of the rule's fields; None when it names no field or the rule has none."""
        named = param_field(self.param)
        if named is None or not self.fields:
            return None
        return named in self.fields


@dataclass(frozen=True)
class ResultSeen:
    """The ``result`` of one finished task in the envelope: its items and how many files it should hold."""

    kind: str  # "videos" or "images"
    expected: int
    items: list[Any]

    @property
    def grouping(self) -> str | None:
        """``per-clip`` (an item per file), ``single`` (one item listing them all), or what it is instead;
        None when a single file cannot tell the two apart."""
        counts = [len(item_urls(item)) for item in self.items]
        if self.expected < 2:
            return None
        if len(counts) == self.expected and all(c == 1 for c in counts):
            return PER_CLIP
        if counts == [self.expected]:
            return SINGLE
        return f"{len(counts)} item(s) holding {sum(counts)} URL(s) for {self.expected} file(s)"

    def shapes(self) -> set[str]:
        """How items holding one URL write it: ``list`` or ``string`` (an item listing several says nothing)."""
        out = set()
        for item in self.items:
            url = item.get("url") if isinstance(item, dict) else None
            if isinstance(url, str):
                out.add("string")
            elif isinstance(url, list) and len(url) == 1:
                out.add("list")
        return out


@dataclass
class Readings:
    dialects: set[str] = field(default_factory=set)  # the body /v1/tasks/{id} answered for video tasks
    results: list[ResultSeen] = field(default_factory=list)
    lifetimes: list[tuple[float, float]] = field(default_factory=list)  # expires_at - (created, completed), s
    data_url_frame: str | None = None  # a paid submission's data: URL start frame: "accepted", or how refused
    running_costs: list[tuple[str, ...]] = field(default_factory=list)  # cost fields of each unfinished poll
    final_costs: list[tuple[str, ...]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # video tasks, submission to final state
    timed_by: set[str] = field(default_factory=set)
    batch_size_policy: str | None = None
    errors: list[ErrorSeen] = field(default_factory=list)
    controls: dict[str, str] = field(default_factory=dict)  # accepted base body → the check that sent it

    # -- noting -------------------------------------------------------------------------------

    def note_task(
        self, followed: Followed, *, kind: str, expected: int, on_tasks_route: bool, seconds: float | None = None
    ) -> None:
        """A task polled until final. Only polls of ``/v1/tasks/{id}`` say which body that route speaks.
        ``seconds``: the task's time read elsewhere, more precisely (the Midjourney-style body's milliseconds)."""
        final = followed.final
        timed = seconds if seconds is not None else followed.seconds
        if kind == "videos" and timed is not None:
            self.seconds.append(timed)
            server = seconds is not None or final.seconds is not None
            self.timed_by.add("the server's timestamps" if server else "polling")
        if not on_tasks_route:
            return
        if kind == "videos":
            self.dialects.add(final.dialect)
            for state in followed.states:
                finished = STATUS_RANK.get(state.status) == 2
                (self.final_costs if finished else self.running_costs).append(state.cost_fields)
        if final.dialect == "unified" and final.status == "SUCCESS":
            self.results.append(ResultSeen(kind, expected, final.items))
            self._note_lifetime(final)

    def _note_lifetime(self, final: Any) -> None:
        data = final.raw.get("data") if isinstance(final.raw, dict) else None
        data = data if isinstance(data, dict) else {}
        created, completed = as_number(data.get("created")), as_number(data.get("completed"))
        expires = [as_number(i.get("expires_at")) for i in final.items if isinstance(i, dict)]
        if created is not None and completed is not None and expires and expires[0] is not None:
            self.lifetimes.append((expires[0] - created, expires[0] - completed))

    def note_error(self, rule: str, response: httpx.Response, fields: tuple[str, ...]) -> None:
        error = error_of(response) or {}
        param = error.get("param")
        self.errors.append(
            ErrorSeen(
                rule=rule,
                shape=error_shape(response),
                keys=tuple(sorted(error)),
                code=error.get("code"),
                type=error.get("type"),
                param=param if isinstance(param, str) else None,
                fields=fields,
            )
        )

    # -- reading ------------------------------------------------------------------------------

    def video_grouping(self) -> set[str]:
        return {g for r in self.results if r.kind == "videos" and (g := r.grouping) is not None}

    def url_shapes(self) -> set[str]:
        """Shapes of single-URL items, leaving out video results when every batch was one item (``single``):
        there a one-clip item is the same list, whatever the shape of other results."""
        single = self.video_grouping() == {SINGLE}
        return {s for r in self.results if not (single and r.kind == "videos") for s in r.shapes()}

    def calibration(self) -> dict[str, Any]:
        """The mockserver settings that reproduce what was observed: only the keys the run could observe."""
        out: dict[str, Any] = {}
        if len(self.dialects) == 1:
            out["task_dialect"] = next(iter(self.dialects))
        if out.get("task_dialect") == "unified":
            shapes, grouping = self.url_shapes(), self.video_grouping()
            if len(shapes) == 1:
                out["unified_url_shape"] = next(iter(shapes))
            if len(grouping) == 1 and grouping <= {PER_CLIP, SINGLE}:
                out["unified_video_items"] = next(iter(grouping))
        if self.batch_size_policy is not None:
            out["batch_size_policy"] = self.batch_size_policy
        if self.seconds:
            out["task_seconds"] = round(statistics.median(self.seconds), 1)
        return {key: out[key] for key in CALIBRATION_KEYS if key in out}

    def rows(self) -> list[tuple[str, str, str, str]]:
        """The open points as report rows: (rule, what the documentation says, what was observed, verdict)."""
        return [
            self._dialect_row(),
            self._url_shape_row(),
            self._grouping_row(),
            self._cost_row(),
            self._seconds_row(),
            self._error_body_row(),
            self._retry_codes_row(),
            self._media_clock_row(),
            self._data_url_row(),
            self._isolation_row(),
        ]

    def _dialect_row(self) -> tuple[str, str, str, str]:
        doc = "the video page shows the Midjourney-style body at /v1/tasks/{id}; the tasks page an envelope"
        seen = "; ".join(DIALECTS.get(d, d) for d in sorted(self.dialects))
        return "open.task_view_dialect", doc, seen or "not seen (no video task was polled)", INFO if seen else SKIP

    def _not_enveloped(self) -> str | None:
        if not self.dialects:
            return "not seen (no video task was polled)"
        if "unified" not in self.dialects:
            return "not applicable: /v1/tasks/{id} answers the Midjourney-style body"
        return None

    def _url_shape_row(self) -> tuple[str, str, str, str]:
        rule, doc = "open.unified_url_shape", "the tasks page's examples show result.*[].url as a list and as a string"
        absent = self._not_enveloped()
        if absent is not None:
            return rule, doc, absent, SKIP if not self.dialects else INFO
        shapes = self.url_shapes()
        if not shapes:
            return rule, doc, "not seen: no finished result held an item with a single URL", SKIP
        return rule, doc, " and ".join(sorted(shapes)) + ": url of an item holding one file", INFO

    def _grouping_row(self) -> tuple[str, str, str, str]:
        rule = "open.unified_video_items"
        doc = "no public sample says whether a batch is one result.videos item per clip or one item with every URL"
        absent = self._not_enveloped()
        if absent is not None:
            return rule, doc, absent, SKIP if not self.dialects else INFO
        seen = [(r.expected, r.grouping) for r in self.results if r.kind == "videos" and r.grouping is not None]
        if not seen:
            return rule, doc, "not seen: no batch larger than 1 finished", SKIP
        by_reading: dict[str, list[int]] = {}
        for expected, grouping in seen:
            by_reading.setdefault(str(grouping), []).append(expected)
        text = "; ".join(f"{g} (batch {', '.join(str(n) for n in sorted(ns))})" for g, ns in sorted(by_reading.items()))
        return rule, doc, text, INFO

    def _cost_row(self) -> tuple[str, str, str, str]:
        rule = "open.cost_fields"
        doc = "integrations read cost (USD) and credits_cost (credits) in /v1/tasks/{id}, said to be there from pending"

        def presence(polls: list[tuple[str, ...]], when: str) -> str:
            if not polls:
                return f"{when}: not seen"
            counts = [f"{name} {sum(name in p for p in polls)}/{len(polls)}" for name in ("cost", "credits_cost")]
            return f"{when}: " + ", ".join(counts) + " poll(s)"

        if not self.final_costs and not self.running_costs:
            return rule, doc, "not seen (no video task was polled)", SKIP
        observed = presence(self.running_costs, "while running") + "; " + presence(self.final_costs, "when final")
        return rule, doc, observed, INFO

    def _seconds_row(self) -> tuple[str, str, str, str]:
        rule = "open.task_seconds"
        doc = (
            "a Midjourney video job takes on the order of a minute (docs/evidence.md, polling); "
            "the fake's --task-seconds"
        )
        if not self.seconds:
            return rule, doc, "not seen (no video task finished)", SKIP
        median = statistics.median(self.seconds)
        by = " and ".join(sorted(self.timed_by))
        return rule, doc, f"median {median:.1f} s over {len(self.seconds)} video task(s), by {by}", INFO

    def _error_body_row(self) -> tuple[str, str, str, str]:
        rule = "open.error_body"
        doc = "the 400 body is not shown on the video page; client scripts read {error: {…}} or {success: false}"
        if not self.errors:
            return rule, doc, "no refusal seen", INFO
        parts = ["; ".join(sorted({e.shape for e in self.errors}))]
        keys = sorted({k for e in self.errors for k in e.keys})
        if keys:
            parts.append("error fields " + ", ".join(keys))
        codes = sorted({type(e.code).__name__ for e in self.errors if "code" in e.keys})
        if codes:
            parts.append("code as " + " / ".join({"int": "an integer", "str": "a string"}.get(c, c) for c in codes))
        types = sorted({str(e.type) for e in self.errors if e.type is not None})
        if types:
            parts.append("types " + ", ".join(types))
        judged = [e for e in self.errors if e.param_matches is not None]
        if judged:
            wrong = [f"{e.rule} names {e.param!r}" for e in judged if not e.param_matches]
            text = f"param names the rule's field in {len(judged) - len(wrong)} of {len(judged)} refusal(s) naming one"
            parts.append(text + (f" (not: {'; '.join(wrong)})" if wrong else ""))
        else:
            parts.append("no refusal names a field in param")
        return rule, doc, "; ".join(parts), INFO

    def _retry_codes_row(self) -> tuple[str, str, str, str]:
        """The best-practices page's retry table names codes no page places in a body (docs/evidence.md,
        "the retry table's codes")."""
        rule = "open.retry_table_codes"
        doc = (
            "best-practices retry table: 1/200 success, 3 NOT_FOUND, 4 VALIDATION_ERROR, 9 FAILURE, 21 MODAL, "
            "24 BANNED_PROMPT (midjourney-proxy's submit codes); no page says which body carries them"
        )
        codes = sorted({e.code for e in self.errors if isinstance(e.code, int) and not isinstance(e.code, bool)})
        if not codes:
            return rule, doc, "no refusal with an integer code seen", INFO
        table = [c for c in codes if c in RETRY_TABLE_CODES]
        seen = ", ".join(map(str, codes))
        if table:
            return rule, doc, f"error bodies' code took {seen}: the table's {table} among them", INFO
        return rule, doc, f"error bodies' code took {seen} (HTTP statuses); none of the table's codes", INFO

    def _media_clock_row(self) -> tuple[str, str, str, str]:
        """Whether ``expires_at`` counts 72 h from the task's end or from its record's drop (docs/evidence.md,
        "media and upload lifetime")."""
        rule = "open.media_clock"
        doc = (
            "tasks kept 3 days, then 404 'while the media URLs still work'; URLs valid 72 h: from the "
            "record's drop (--media-clock record) or from the task's end (--media-clock end)"
        )
        if not self.lifetimes:
            return rule, doc, "no finished task's expires_at seen in the envelope", SKIP
        after_created, after_end = self.lifetimes[0]
        seen = f"expires_at {after_end / 3600:.1f} h after completion, {after_created / 3600:.1f} h after submission"
        if abs(after_end - 72 * 3600) < 120:
            return rule, doc, seen + ": --media-clock end", INFO
        if abs(after_created - 144 * 3600) < 120:
            return rule, doc, seen + ": --media-clock record", INFO
        return rule, doc, seen + ": neither reading (set --media-ttl-seconds to match)", INFO

    def _data_url_row(self) -> tuple[str, str, str, str]:
        """Whether a base64 (``data:`` URL) start frame is taken (docs/evidence.md, "base64 frames")."""
        rule = "open.data_url_frames"
        doc = (
            "the imagine page takes 'URLs or base64'; the uploads page says generation APIs no longer accept "
            "base64: accepted (--data-url-frames accept) or refused (--data-url-frames refuse)"
        )
        if self.data_url_frame is None:
            return rule, doc, "not settled: no paid submission's data: URL start frame was taken or refused", SKIP
        if self.data_url_frame == "accepted":
            return rule, doc, "a data: URL start frame was accepted: --data-url-frames accept", INFO
        return rule, doc, f"a data: URL start frame was refused ({self.data_url_frame}): --data-url-frames refuse", INFO

    def _isolation_row(self) -> tuple[str, str, str, str]:
        rule = "refuse.isolation"
        doc = "a refusal proves its rule only when the same body without that one fault is accepted"
        if not self.controls:
            return (
                rule,
                doc,
                "not confirmed: no paid submission ran, so the refusals above may be for another reason "
                "(the start frame itself, say)",
                SKIP,
            )
        accepted = ", ".join(f"the {body} ({check})" for body, check in sorted(self.controls.items()))
        return rule, doc, f"accepted: {accepted}; each refusal probe changes one field of such a body", INFO


def write_calibration(path: Path, calibration: dict[str, Any], base_url: str) -> None:
    """The settings as YAML, for ``mockserver serve --config FILE``."""
    lines = [
        f"# mockserver settings observed by `python -m contract` against {base_url}",
        f"# (only what the run could observe); load with: mockserver serve --config {path}",
    ]
    body = yaml.safe_dump(calibration, sort_keys=False, default_flow_style=False) if calibration else "{}\n"
    path.write_text("\n".join(lines) + "\n" + body, encoding="utf-8")
