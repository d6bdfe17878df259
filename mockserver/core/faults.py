"""The fault catalogue: what can go wrong on purpose, and how a fault is chosen.

A fault is chosen for a request by, in this order (``choose``):

1. the header ``X-Mock-Scenario: NAME[; key=value …]``;
2. a prompt marker ``[mock:NAME key=value …]`` anywhere in the prompt;
3. the first matching fault rule set through the control plane (by endpoint,
   account and body field values; firing once, N times or always, with a
   probability).

Values with spaces are quoted: ``fail; reason="GPU on fire"``. The wire names
(``X-Mock-Scenario``, ``/__mock__/scenarios``, a rule's ``scenario`` field)
are kept as they were for compatibility; in code the idea is called a fault.
Pure parsing, matching and choosing; the service applies the result.
"""

from __future__ import annotations

import math
import random
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import BAD_GATEWAY, INVALID_REQUEST, RATE_LIMIT, SERVER, ApiError

FAULT_HEADER = "X-Mock-Scenario"
MODERATION_REASON = "Banned prompt detected"
CANCEL_REASON = "Task timeout"
MODERATION_422_MESSAGE = "prompt or image failed moderation, refunded"
UPSTREAM_TIMEOUT_REASON = "Upstream timeout: the generation service did not answer in time"


@dataclass(frozen=True)
class FaultKind:
    name: str
    summary: str
    params: Mapping[str, str] = field(default_factory=dict)
    task: bool = False  # changes how the submitted task ends (applies to submissions only)


CATALOGUE: dict[str, FaultKind] = {
    k.name: k
    for k in (
        FaultKind(
            "moderation", f"the task ends in FAILURE with '{MODERATION_REASON}'; its charge is refunded", task=True
        ),
        FaultKind(
            "upstream_timeout", f"the task ends in FAILURE with '{UPSTREAM_TIMEOUT_REASON}'; refunded", task=True
        ),
        FaultKind(
            "fail", "the task ends in FAILURE with a chosen reason; refunded", {"reason": "fail_reason"}, task=True
        ),
        FaultKind("never", "the task never finishes (stays IN_PROGRESS)", task=True),
        FaultKind(
            "not_start",
            "the task stays NOT_START (created, not yet confirmed; 'pending' in the envelope) for a while first",
            {"seconds": "how long it stays NOT_START (default 5)"},
            task=True,
        ),
        FaultKind(
            "cancel",
            f"the task ends cancelled ('cancelled' in the envelope, FAILURE with '{CANCEL_REASON}'); refunded",
            task=True,
        ),
        FaultKind(
            "moderation_422",
            "the submission is refused at once: 422 invalid_request_error, 'prompt or image failed moderation'",
        ),
        FaultKind("rate_limit", "429 rate_limit_error with Retry-After", {"retry_after": "seconds (default 5)"}),
        FaultKind("error_500", "500 with the provider's error body"),
        FaultKind("error_502", "502 with the provider's error body"),
        FaultKind("error_503", "503 with the provider's error body"),
        FaultKind("error_504", "504 with the provider's error body"),
        FaultKind(
            "latency",
            "answer late: a fixed delay or one drawn from a distribution",
            {
                "ms": "fixed delay in milliseconds",
                "dist": "uniform | normal | exponential",
                "min": "uniform: low ms",
                "max": "uniform: high ms",
                "mean": "normal/exponential: mean ms",
                "sd": "normal: standard deviation ms",
            },
        ),
        FaultKind("drop", "the connection is closed before the body is sent"),
        FaultKind("truncate", "the body is cut off halfway and the connection closed"),
    )
}
_MARKER = re.compile(r"\[mock:(?P<spec>[^\]]{1,1000})\]")


@dataclass(frozen=True)
class Fault:
    name: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> FaultKind:
        return CATALOGUE[self.name]


def _split(text: str, where: str) -> list[str]:
    """Words separated by ``;`` or white space; double- or single-quoted values keep their spaces."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";")
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        return [word for word in lexer if word != ";" and set(word) != {";"}]
    except ValueError as exc:  # an unclosed quote
        raise ApiError(400, f"{where}: {exc}", param=where) from None


def parse(text: str, where: str = FAULT_HEADER) -> Fault:
    """``NAME[; key=value …]`` (or space-separated, as in a prompt marker); values may be quoted."""
    if len(text) > 1000:
        raise ApiError(400, f"{where} is longer than 1000 characters", param=where)
    parts = _split(text.strip(), where)
    if not parts:
        raise ApiError(400, f"{where} is empty; known faults: {', '.join(CATALOGUE)}", param=where)
    name, params = parts[0].lower(), {}
    if name not in CATALOGUE:
        raise ApiError(400, f"{where}: unknown fault {name!r}; known: {', '.join(CATALOGUE)}", param=where)
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ApiError(400, f"{where}: expected key=value, got {part!r}", param=where)
        params[key.strip().lower()] = value.strip()
    return validated(Fault(name, params), where)


def validated(fault: Fault, where: str) -> Fault:
    """The fault if its parameters are known and their numbers readable (checked now, not when it fires)."""
    if fault.name not in CATALOGUE:
        raise ApiError(400, f"{where}: unknown fault {fault.name!r}; known: {', '.join(CATALOGUE)}", param=where)
    unknown = set(fault.params) - set(fault.kind.params)
    if unknown:
        raise ApiError(400, f"{where}: {fault.name} takes no parameter {', '.join(sorted(unknown))}", param=where)
    request_error(fault, where)
    delay_seconds(fault, random.Random(0), where)
    return fault


def screened(fault: Fault | None, nsfw_check: Any) -> Fault | None:
    """``nsfw_check: true`` screens the prompt before the task is made (docs/evidence.md, "Imagine
    extras"): a prompt moderation would fail later is refused at submit instead (422)."""
    if fault is not None and fault.name == "moderation" and nsfw_check is True:
        return Fault("moderation_422", {})
    return fault


def from_prompt(prompt: Any) -> Fault | None:
    if not isinstance(prompt, str):
        return None
    match = _MARKER.search(prompt)
    return parse(match.group("spec"), "prompt marker") if match else None


@dataclass(frozen=True)
class FaultRule:
    """A fault set through the control plane: which requests it applies to, and how often."""

    id: str
    fault: Fault
    endpoint: str = "any"
    account: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    times: int | None = None  # None: every time
    probability: float = 1.0
    # How often it has fired: the store keeps the count (``Store.fault_rule_counts``); listings fill it in.
    fired: int = field(default=0, compare=False)

    def matches(self, endpoint: str, account: str | None, body: Mapping[str, Any] | None) -> bool:
        if self.endpoint not in ("any", endpoint):
            return False
        if self.account is not None and self.account != account:
            return False
        if self.fields:
            if body is None:
                return False
            return all(body.get(k) == v for k, v in self.fields.items())
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scenario": self.fault.name,
            "params": dict(self.fault.params),
            "endpoint": self.endpoint,
            "account": self.account,
            "fields": dict(self.fields),
            "times": self.times,
            "probability": self.probability,
            "fired": self.fired,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultRule:
        return cls(
            id=data["id"],
            fault=Fault(data["scenario"], dict(data.get("params") or {})),
            endpoint=data.get("endpoint", "any"),
            account=data.get("account"),
            fields=dict(data.get("fields") or {}),
            times=data.get("times"),
            probability=float(data.get("probability", 1.0)),
            fired=int(data.get("fired") or 0),
        )


def request_error(fault: Fault, where: str = "scenario") -> ApiError | None:
    """The refusal a request-level fault answers with, or None."""
    if fault.name == "rate_limit":
        raw = fault.params.get("retry_after", "5")
        if not raw.isdigit():
            raise ApiError(400, f"{where}: retry_after must be whole seconds, got {raw!r}", param=where)
        return ApiError(
            429,
            "Rate limit reached for requests; retry after the time in Retry-After",
            type=RATE_LIMIT,
            headers={"Retry-After": raw},
        )
    if fault.name.startswith("error_"):
        status = int(fault.name.removeprefix("error_"))
        words = {500: "internal error", 502: "bad gateway", 503: "service unavailable", 504: "gateway timeout"}
        # The endpoint pages name 502 bad_gateway; every other 5xx is server_error.
        return ApiError(status, f"upstream {words[status]} (simulated)", type=BAD_GATEWAY if status == 502 else SERVER)
    if fault.name == "moderation_422":
        return ApiError(422, MODERATION_422_MESSAGE, type=INVALID_REQUEST, param="prompt")
    if fault.name == "not_start":
        raw = fault.params.get("seconds", "5")
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1.0
        if not (math.isfinite(seconds) and 0 <= seconds <= 86400):
            raise ApiError(400, f"{where}: seconds must be a number from 0 to 86400, got {raw!r}", param=where)
    return None


def delay_seconds(fault: Fault, rng: random.Random, where: str = "scenario", most: float = 120.0) -> float:
    """The added latency of a ``latency`` fault (0 for others) in seconds, from 0 to ``most``
    (``max_latency_ms``)."""
    if fault.name != "latency":
        return 0.0
    p = fault.params
    try:
        dist = p.get("dist")
        if dist is None:
            ms = float(p.get("ms", "0"))
        elif dist == "uniform":
            ms = rng.uniform(float(p.get("min", "0")), float(p.get("max", "1000")))
        elif dist == "normal":
            ms = rng.gauss(float(p.get("mean", "200")), float(p.get("sd", "50")))
        elif dist == "exponential":
            ms = rng.expovariate(1.0 / max(float(p.get("mean", "200")), 1e-6))
        else:
            raise ApiError(400, f"{where}: dist must be uniform, normal or exponential", param=where)
    except (ValueError, OverflowError):
        raise ApiError(400, f"{where}: latency parameters must be numbers", param=where) from None
    try:
        finite = all(math.isfinite(float(v)) for k, v in p.items() if k != "dist")
    except (ValueError, OverflowError):
        finite = False
    if not finite:
        raise ApiError(400, f"{where}: latency parameters must be finite numbers", param=where)
    return max(0.0, min(ms / 1000.0, most)) if math.isfinite(ms) else most


def task_outcome(fault: Fault) -> tuple[str, str] | None:
    """(outcome, fail_reason) for task-level faults, or None."""
    if fault.name == "moderation":
        return "failure", MODERATION_REASON
    if fault.name == "upstream_timeout":
        return "failure", UPSTREAM_TIMEOUT_REASON
    if fault.name == "fail":
        return "failure", fault.params.get("reason") or "Task failed"
    if fault.name == "never":
        return "never", ""
    if fault.name == "cancel":
        return "cancel", CANCEL_REASON
    return None


def task_params(fault: Fault) -> dict[str, Any]:
    """What a task-level fault adds to the task's record (how long ``not_start`` holds it)."""
    if fault.name == "not_start":
        return {"not_start_seconds": float(fault.params.get("seconds", "5"))}
    return {}


# Which requests may draw from the fault rules: task faults only change submissions.
SUBMISSIONS = frozenset({"video", "imagine"})


def choose(
    header: str | None,
    prompt: Any,
    rules: Iterable[FaultRule],
    endpoint: str,
    account: str | None,
    body: Mapping[str, Any] | None,
    rng: random.Random,
    fire: Callable[[str], bool],
) -> Fault | None:
    """The one fault for this request: the header's, else the prompt marker's, else the first
    matching rule that wins its probability draw and still has firings left (``fire`` counts
    one firing atomically in the store and says whether there was one left)."""
    if header is not None:
        return parse(header)
    marked = from_prompt(prompt)
    if marked is not None:
        return marked
    for rule in rules:
        if rule.fault.kind.task and endpoint not in SUBMISSIONS:
            continue
        if not rule.matches(endpoint, account, body):
            continue
        if rule.probability < 1.0 and rng.random() >= rule.probability:
            continue
        if fire(rule.id):
            return rule.fault
    return None


def probability(value: Any) -> float:
    """A rule's probability: a finite number in [0, 1]."""
    p = float(value)
    if not math.isfinite(p) or not 0.0 <= p <= 1.0:
        raise ApiError(400, f"probability must be a number from 0 to 1 (got {value!r})", param="probability")
    return p
