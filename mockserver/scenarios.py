"""The fault catalogue: what can go wrong on purpose, and how a fault is chosen.

A scenario is chosen for a request by, in this order:

1. the header ``X-Mock-Scenario: NAME[; key=value …]``;
2. a prompt marker ``[mock:NAME key=value …]`` anywhere in the prompt;
3. the first matching rule set through the control plane (by endpoint,
   account and body field values; firing once, N times or always, with a
   probability).

Pure parsing and matching; the HTTP shell applies the result.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import RATE_LIMIT, SERVER, ApiError

MODERATION_REASON = "Banned prompt detected"
UPSTREAM_TIMEOUT_REASON = "Upstream timeout: the generation service did not answer in time"


@dataclass(frozen=True)
class Kind:
    name: str
    summary: str
    params: Mapping[str, str] = field(default_factory=dict)
    task: bool = False  # changes how the submitted task ends (applies to submissions only)


CATALOGUE: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("moderation", f"the task ends in FAILURE with '{MODERATION_REASON}'; its charge is refunded", task=True),
        Kind("upstream_timeout", f"the task ends in FAILURE with '{UPSTREAM_TIMEOUT_REASON}'; refunded", task=True),
        Kind("fail", "the task ends in FAILURE with a chosen reason; refunded", {"reason": "fail_reason"}, task=True),
        Kind("never", "the task never finishes (stays IN_PROGRESS)", task=True),
        Kind("rate_limit", "429 rate_limit_error with Retry-After", {"retry_after": "seconds (default 5)"}),
        Kind("error_500", "500 with the provider's error body"),
        Kind("error_502", "502 with the provider's error body"),
        Kind("error_503", "503 with the provider's error body"),
        Kind("error_504", "504 with the provider's error body"),
        Kind(
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
        Kind("drop", "the connection is closed before the body is sent"),
        Kind("truncate", "the body is cut off halfway and the connection closed"),
    )
}
ENDPOINTS = ("video", "imagine", "poll", "upload", "any")
_MARKER = re.compile(r"\[mock:(?P<spec>[^\]]+)\]")


@dataclass(frozen=True)
class Scenario:
    name: str
    params: Mapping[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> Kind:
        return CATALOGUE[self.name]


def parse(text: str, where: str = "X-Mock-Scenario") -> Scenario:
    """``NAME[; key=value …]`` (or space-separated, as in a prompt marker)."""
    parts = [p for p in re.split(r"[;\s]+", text.strip()) if p]
    if not parts:
        raise ApiError(400, f"{where} is empty; known scenarios: {', '.join(CATALOGUE)}", param=where)
    name, params = parts[0].lower(), {}
    if name not in CATALOGUE:
        raise ApiError(400, f"{where}: unknown scenario {name!r}; known: {', '.join(CATALOGUE)}", param=where)
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise ApiError(400, f"{where}: expected key=value, got {part!r}", param=where)
        params[key.strip().lower()] = value.strip()
    scenario = Scenario(name, params)
    unknown = set(params) - set(scenario.kind.params)
    if unknown:
        raise ApiError(400, f"{where}: {name} takes no parameter {', '.join(sorted(unknown))}", param=where)
    request_error(scenario, where)  # validate numbers now, not when the fault fires
    delay_seconds(scenario, random.Random(0), where)
    return scenario


def from_prompt(prompt: Any) -> Scenario | None:
    if not isinstance(prompt, str):
        return None
    match = _MARKER.search(prompt)
    return parse(match.group("spec"), "prompt marker") if match else None


def strip_markers(prompt: str) -> str:
    return " ".join(_MARKER.sub(" ", prompt).split())


@dataclass(frozen=True)
class Rule:
    """A fault set through the control plane."""

    id: str
    scenario: Scenario
    endpoint: str = "any"
    account: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    times: int | None = None  # None: every time
    probability: float = 1.0

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
            "scenario": self.scenario.name,
            "params": dict(self.scenario.params),
            "endpoint": self.endpoint,
            "account": self.account,
            "fields": dict(self.fields),
            "times": self.times,
            "probability": self.probability,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        return cls(
            id=data["id"],
            scenario=Scenario(data["scenario"], dict(data.get("params") or {})),
            endpoint=data.get("endpoint", "any"),
            account=data.get("account"),
            fields=dict(data.get("fields") or {}),
            times=data.get("times"),
            probability=float(data.get("probability", 1.0)),
        )


def request_error(scenario: Scenario, where: str = "scenario") -> ApiError | None:
    """The refusal a request-level scenario answers with, or None."""
    if scenario.name == "rate_limit":
        raw = scenario.params.get("retry_after", "5")
        if not raw.isdigit():
            raise ApiError(400, f"{where}: retry_after must be whole seconds, got {raw!r}", param=where)
        return ApiError(
            429,
            "Rate limit reached for requests; retry after the time in Retry-After",
            type=RATE_LIMIT,
            headers={"Retry-After": raw},
        )
    if scenario.name.startswith("error_"):
        status = int(scenario.name.removeprefix("error_"))
        words = {500: "internal error", 502: "bad gateway", 503: "service unavailable", 504: "gateway timeout"}
        return ApiError(status, f"upstream {words[status]} (simulated)", type=SERVER)
    return None


def delay_seconds(scenario: Scenario, rng: random.Random, where: str = "scenario") -> float:
    """The added latency of a ``latency`` scenario (0 for others), never negative."""
    if scenario.name != "latency":
        return 0.0
    p = scenario.params
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
    except ValueError:
        raise ApiError(400, f"{where}: latency parameters must be numbers", param=where) from None
    return max(0.0, min(ms, 120_000.0)) / 1000.0


def task_outcome(scenario: Scenario) -> tuple[str, str] | None:
    """(outcome, fail_reason) for task-level scenarios, or None."""
    if scenario.name == "moderation":
        return "failure", MODERATION_REASON
    if scenario.name == "upstream_timeout":
        return "failure", UPSTREAM_TIMEOUT_REASON
    if scenario.name == "fail":
        return "failure", scenario.params.get("reason") or "Task failed"
    if scenario.name == "never":
        return "never", ""
    return None
