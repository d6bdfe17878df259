"""What the proxy checks an exchange against, as small named rules.

Each rule has a name (``request.schema``, ``task.clip_count``, …), and a check
returns :class:`Finding`\\ s: the rule, what the spec (or the fake, which
enforces it) says, and what was seen. Three groups:

* ``request.*``: the client's request as the fake would judge it (the spec's
  request schemas and the pure submission rules of ``core.submission``);
* ``response.*``: the upstream's answer against the operation's documented
  statuses and response schemas in ``spec/openapi.yaml``;
* ``task.*``: a task's story across polls (statuses only move forward; the
  final answer carries one clip URL per submitted clip).

No HTTP client and no I/O here: bytes and headers in, findings out.
"""

from __future__ import annotations

import dataclasses
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs

from ..core import jsonio, submission
from ..core.accounts import bearer_token
from ..core.errors import ApiError
from ..core.records import IMAGINE
from ..core.replay import PollReading
from ..core.spec import Spec, field_name

MiB = 1024 * 1024
MAX_BODY_BYTES = 40 * MiB  # the fake's defaults: what it would refuse
MAX_FRAME_BYTES = 12 * MiB

RULES: dict[str, str] = {
    "request.auth": "a request without 'Authorization: Bearer <key>' (the fake answers 401)",
    "request.content_type": "a submission that is not application/json (the fake answers 415)",
    "request.too_large": "a body over 40 MiB (the fake answers 413)",
    "request.json": "a body that is not a JSON object (the fake answers 400)",
    "request.schema": "a body the spec's request schema refuses (the fake answers 400)",
    "request.rule": "a body a documented submission rule refuses (the fake answers 400)",
    "response.status": "a status the spec does not document for the operation",
    "response.schema": "an answer whose body or content type the operation's response schema refuses",
    "task.status_order": "a task whose status moves backwards (or changes once final)",
    "task.clip_count": "a finished video task whose clip URLs differ from the submitted batch_size",
    "upstream.unreachable": "no answer from the upstream (the proxy answered 502 or 504)",
}

KINDS = {
    "createVideo": "video",
    "createImagine": "imagine",
    "createImagineAlias": "imagine",
    "getTask": "poll",
    "getMidjourneyTask": "poll",
    "uploadImage": "upload",
}
PAID = frozenset({"video", "imagine"})


@dataclass(frozen=True)
class Finding:
    """One divergence, before it is stamped with the exchange it came from."""

    rule: str
    expected: str  # what the spec says
    seen: str  # what was seen
    in_answer: bool = True  # whether the answer the client gets diverges (--strict replaces it)
    repeat: bool = False  # the same task broke the same rule before: replaced, but not logged again


# -- the spec's operations -----------------------------------------------------------------


@dataclass(frozen=True)
class BodyCheck:
    """A documented JSON body: one schema or the alternatives of a ``oneOf``."""

    names: tuple[str, ...]
    validators: tuple[Any, ...]
    required: tuple[frozenset[str], ...]

    def problem(self, body: Any) -> str | None:
        """None when the body matches; else the first violation, naming the field."""
        if any(v.is_valid(body) for v in self.validators):
            return None
        chosen = 0
        if isinstance(body, dict) and len(self.validators) > 1:  # report against the alternative it resembles
            for n, required in enumerate(self.required):
                if required and required <= body.keys():
                    chosen = n
                    break
        for error in self.validators[chosen].iter_errors(body):
            where = field_name(error.instance_path) or "body"
            return f"{where}: {_short(error.message)} ({self.names[chosen]})"
        return f"does not match {' or '.join(self.names)}"  # pragma: no cover - a validator that fails has errors


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    operation_id: str
    kind: str  # video | imagine | poll | upload | other
    request_schema: str | None
    responses: Mapping[int, BodyCheck | None]

    @property
    def paid(self) -> bool:
        return self.kind in PAID


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Contract:
    """The spec's operations, their request and response rules."""

    def __init__(self, spec: Spec | None = None) -> None:
        self.spec = spec or Spec.shared()
        document = self.spec.document
        self._components = document["components"]
        self.operations: list[Operation] = []
        for template, item in document["paths"].items():
            regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
            for method, op in item.items():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                operation_id = str(op.get("operationId", ""))
                self.operations.append(
                    Operation(
                        method=method.upper(),
                        template=template,
                        pattern=re.compile(f"^{regex}$"),
                        operation_id=operation_id,
                        kind=KINDS.get(operation_id, "other"),
                        request_schema=self._request_schema(op),
                        responses={int(code): self._body_check(node) for code, node in op["responses"].items()},
                    )
                )
        self.batch_sizes = tuple(self.spec.enum("VideoRequest", "batch_size"))
        self.video_defaults = {
            name: self.spec.default("VideoRequest", name) for name in ("video_type", "motion", "animate_mode")
        }

    def _resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        ref = node.get("$ref")
        while isinstance(ref, str):
            section, name = ref.split("/")[-2:]
            node = self._components[section][name]
            ref = node.get("$ref")
        return node

    def _request_schema(self, op: dict[str, Any]) -> str | None:
        schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
        ref = schema.get("$ref")
        return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None

    def _body_check(self, node: dict[str, Any]) -> BodyCheck | None:
        content = self._resolve(node).get("content", {})
        schema = content.get("application/json", {}).get("schema")
        if schema is None:
            return None
        alternatives = schema.get("oneOf") or [schema]
        names, validators, required = [], [], []
        for alternative in alternatives:
            ref = alternative.get("$ref")
            names.append(ref.rsplit("/", 1)[-1] if isinstance(ref, str) else "schema")
            validators.append(jsonschema_rs.Draft202012Validator({**alternative, "components": self._components}))
            required.append(frozenset(self._resolve(alternative).get("required", ())))
        return BodyCheck(tuple(names), tuple(validators), tuple(required))

    def find(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The documented operation a request is for (a literal path wins over a template)."""
        best: tuple[Operation, dict[str, str]] | None = None
        for op in self.operations:
            if op.method != method:
                continue
            match = op.pattern.match(path)
            if match is None:
                continue
            if not match.groupdict():
                return op, {}
            best = best or (op, match.groupdict())
        return best

    # -- requests ---------------------------------------------------------------------------

    def check_request(self, op: Operation, headers: Mapping[str, str], raw: bytes) -> RequestVerdict:
        """The request as the fake would judge it: findings, and what a submission would cost."""
        verdict = RequestVerdict()
        if bearer_token(headers.get("authorization")) is None:
            seen = "no Authorization header" if not headers.get("authorization") else "not 'Bearer <key>'"
            verdict.refused("request.auth", "Authorization: Bearer <key> (else 401)", seen)
        if op.request_schema is None:
            return verdict
        body = self._submission_body(op, headers, raw, verdict)
        verdict.body = body
        if op.kind == "video":
            verdict.price_key = submission.price_key(str((body or {}).get("video_type") or "vid_1.1_i2v_480"))
        else:
            verdict.price_key = submission.imagine_price_key(str((body or {}).get("speed") or "relax"))
        if body is None:
            return verdict
        try:
            self.spec.check(op.request_schema, body)
            if op.kind == "video":
                job = self._video_job(body)
                verdict.batch_size, verdict.quantity, verdict.price_key = job.batch_size, job.quantity, job.price_key
            else:
                submission.imagine_prompt(body.get("prompt"))
                for n, url in enumerate(body.get("image_urls") or []):
                    submission.frame_within_limit(url, f"image_urls[{n}]", MAX_FRAME_BYTES, _unmeasured)
        except ApiError as error:
            rule = "request.schema" if not self.spec.is_valid(op.request_schema, body) else "request.rule"
            verdict.refused(rule, _described(error), "the client sent it")
            if op.kind == "video" and isinstance(body.get("batch_size"), int) and body["batch_size"] > 0:
                verdict.quantity = min(int(body["batch_size"]), 4)
        return verdict

    def _submission_body(
        self, op: Operation, headers: Mapping[str, str], raw: bytes, verdict: RequestVerdict
    ) -> dict[str, Any] | None:
        kind = (headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if kind and kind != "application/json" and not kind.endswith("+json"):
            verdict.refused("request.content_type", "Content-Type: application/json (else 415)", kind)
        if len(raw) > MAX_BODY_BYTES:
            verdict.refused("request.too_large", f"a body of at most {MAX_BODY_BYTES} bytes (else 413)", f"{len(raw)}")
            return None
        try:
            if not raw.strip():
                raise ApiError(400, "request body is empty; a JSON object is required")
            return submission.refuse_non_object(jsonio.loads(raw))
        except UnicodeDecodeError:
            verdict.refused("request.json", "a UTF-8 JSON object (else 400)", "bytes that are not UTF-8")
        except ApiError as error:
            verdict.refused("request.json", "a JSON object (else 400)", error.message)
        return None

    def _video_job(self, body: dict[str, Any]) -> submission.VideoJob:
        task_id = body.get("task_id")
        # The parent task lives upstream: assume it is a finished imagine task (the upstream judges it).
        parent = submission.ParentTask(IMAGINE, "SUCCESS", "(inherited)") if task_id else None
        return submission.video_job(
            body,
            policy=submission.STRICT,
            allowed_batch_sizes=self.batch_sizes,
            defaults=self.video_defaults,
            parent=parent,
            max_frame_bytes=MAX_FRAME_BYTES,
            measure_upload=_unmeasured,
        )

    # -- responses --------------------------------------------------------------------------

    def check_response(self, op: Operation, status: int, content_type: str, raw: bytes) -> tuple[list[Finding], Any]:
        """The answer against the operation's documented statuses and bodies; and the body, parsed."""
        body = _parse(raw)
        documented = op.responses
        if status not in documented:
            codes = ", ".join(str(c) for c in sorted(documented))
            return [Finding("response.status", f"{op.method} {op.template} answers one of {codes}", str(status))], body
        check = documented[status]
        if check is None:
            return [], body
        kind = content_type.split(";", 1)[0].strip().lower()
        findings = []
        if kind != "application/json" and not kind.endswith("+json"):
            findings.append(
                Finding("response.schema", f"{status}: Content-Type application/json", kind or "no Content-Type")
            )
        if body is _NOT_JSON:
            findings.append(
                Finding("response.schema", f"{status}: a JSON body ({' or '.join(check.names)})", _excerpt(raw))
            )
            return findings, None
        problem = check.problem(body)
        if problem is not None:
            findings.append(
                Finding("response.schema", f"{status}: a body matching {' or '.join(check.names)}", problem)
            )
        return findings, body


_NOT_JSON: Any = object()


def _parse(raw: bytes) -> Any:
    try:
        return jsonio.loads(raw) if raw.strip() else _NOT_JSON
    except (ApiError, UnicodeDecodeError, ValueError):
        return _NOT_JSON


def parsed(raw: bytes) -> Any:
    """A body as JSON, or None."""
    body = _parse(raw)
    return None if body is _NOT_JSON else body


def _excerpt(raw: bytes, limit: int = 80) -> str:
    text = raw[:limit].decode("utf-8", "replace")
    return repr(text) + ("…" if len(raw) > limit else "")


def _unmeasured(url: str) -> int | None:
    return None  # the upstream's upload URLs cannot be measured from here


def _described(error: ApiError) -> str:
    param = f", param {error.param}" if error.param else ""
    return f"{error.message} ({error.status}{param})"


@dataclass
class RequestVerdict:
    """The request as the fake would judge it."""

    body: dict[str, Any] | None = None
    findings: list[Finding] = field(default_factory=list)
    batch_size: int | None = None  # the effective batch size of a video submission the rules accept
    price_key: str | None = None
    quantity: int = 1

    def refused(self, rule: str, expected: str, seen: str) -> None:
        self.findings.append(Finding(rule, expected, seen, in_answer=False))

    def answered(self, status: int) -> list[Finding]:
        """The divergences, now that the upstream's status is known: an answer that accepts what the
        fake refuses diverges. A refusal agrees with the fake: that is ``agreed``, not a divergence."""
        if not 200 <= status < 300:
            return []
        word = f"the upstream accepted it ({status})"
        return [Finding(f.rule, f.expected, f"{f.seen}; {word}", in_answer=True) for f in self.findings]

    def agreed(self, status: int) -> list[str]:
        """The rules the upstream confirmed by refusing what the fake refuses too."""
        return [] if 200 <= status < 300 else [f.rule for f in self.findings]


# -- tasks across polls --------------------------------------------------------------------


@dataclass
class Watch:
    """What the proxy knows of one task."""

    task_id: str
    kind: str | None = None  # video | imagine (None: submitted before the proxy saw it)
    batch_size: int | None = None
    price_key: str | None = None
    quantity: int = 1
    charged: bool = False
    last: str | None = None
    rank: int = -1
    final: str | None = None
    flagged: set[str] = field(default_factory=set)


ORDER = (
    "statuses only move forward: NOT_START < SUBMITTED < IN_PROGRESS < SUCCESS | FAILURE "
    "(pending < processing < completed | failed | cancelled), and a final status stays"
)


SUCCESS, FAILED = "success", "failed"  # a final outcome, whichever dialect showed it


class TaskBook:
    """The tasks seen, newest kept (a bounded map), and the rules across their polls."""

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self._tasks: OrderedDict[str, Watch] = OrderedDict()

    def __contains__(self, task_id: str) -> bool:
        return task_id in self._tasks

    def __iter__(self) -> Iterator[Watch]:
        return iter(list(self._tasks.values()))

    def get(self, task_id: str) -> Watch:
        watch = self._tasks.get(task_id)
        if watch is None:
            watch = self._tasks[task_id] = Watch(task_id)
            while len(self._tasks) > self.limit:
                self._tasks.popitem(last=False)
        return watch

    def submitted(
        self, task_id: str, kind: str, batch_size: int | None, price_key: str | None, quantity: int
    ) -> tuple[Watch, bool]:
        """Note an accepted submission; False when the task was known already (an idempotent replay)."""
        new = task_id not in self._tasks
        watch = self.get(task_id)
        if new or watch.kind is None:
            watch.kind, watch.batch_size, watch.price_key, watch.quantity = kind, batch_size, price_key, quantity
        return watch, new

    def polled(self, task_id: str, reading: PollReading) -> tuple[list[Finding], bool]:
        """The findings of one poll answer, and whether it is the first to show the task final."""
        watch = self.get(task_id)
        findings: list[Finding] = []
        rank = reading.rank
        if rank is None:
            return findings, False  # an unknown status: the response schema names it
        changed = watch.final is not None and (not reading.final or reading.success != (watch.final == SUCCESS))
        backwards = rank < watch.rank or changed  # a final outcome, in either dialect, stays
        if backwards:
            findings.append(
                self._flag(watch, Finding("task.status_order", ORDER, f"{reading.status} after {watch.last}"))
            )
        watch.last = reading.status
        watch.rank = max(watch.rank, rank)
        first_final = reading.final and watch.final is None
        if first_final:
            watch.final = SUCCESS if reading.success else FAILED  # one scale for both dialects
        if reading.success and watch.batch_size is not None and (watch.kind == "video" or reading.media == "videos"):
            count = len(reading.urls)
            if count != watch.batch_size:
                where = "video_urls" if reading.dialect == "mj" else "data.result.videos"
                expected = f"one clip URL per submitted clip: {watch.batch_size} (the effective batch_size)"
                findings.append(self._flag(watch, Finding("task.clip_count", expected, f"{count} URL(s) in {where}")))
        return findings, first_final

    @staticmethod
    def _flag(watch: Watch, finding: Finding) -> Finding:
        if finding.rule in watch.flagged:
            return dataclasses.replace(finding, repeat=True)
        watch.flagged.add(finding.rule)
        return finding
