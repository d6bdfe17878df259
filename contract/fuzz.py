"""Schemathesis over ``spec/openapi.yaml``: examples, positive and negative data, built-in checks.

Cases come from schemathesis' strategies; each is sent through the target's
own httpx client (so the same code reaches a live URL or the in-process fake,
under the same spend guard) and the answer is judged by schemathesis'
``validate_response``. Against a live target only free requests are made:
submissions without a token (they must be 401) and polls of unknown tasks.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .report import FAIL, PASS, SKIP, Report
from .spec import spec_path
from .target import Target

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
]
# positive_data_acceptance is left out on purpose: the schema cannot say the rules that
# span fields (image_urls xor task_id, auto needs task_id), so schema-valid bodies may be refused.
PAID_OPERATIONS = {"POST /v1/midjourney/generations/video", "POST /v1/midjourney/generations",
                   "POST /v1/midjourney/generations/imagine"}  # fmt: skip


@dataclass
class Tally:
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def _request_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """schemathesis' requests-style arguments, as httpx takes them."""
    out: dict[str, Any] = {"headers": kwargs.get("headers") or {}, "params": kwargs.get("params") or None}
    if "json" in kwargs:
        out["json"] = kwargs["json"]
    files = kwargs.get("files")
    if files:
        parts: list[tuple[str, Any]] = []
        data: dict[str, str] = {}
        for name, value in files:
            if isinstance(value, tuple) and value and value[0] is None:
                raw = value[1]
                if isinstance(raw, bytes):
                    raw = raw.decode("utf-8", "replace")
                data[name] = raw if isinstance(raw, str) else json.dumps(raw)
            else:
                parts.append((name, value))
        out["files"] = parts or None
        out["data"] = data or None
    elif kwargs.get("data") is not None:
        data_value = kwargs["data"]
        if isinstance(data_value, bytes | str):
            out["content"] = data_value
        else:
            out["data"] = data_value
    return out


def tasks_made(tallies: dict[str, Tally], profile: Any) -> int:
    """Submissions schemathesis sent with the key that were accepted (each a task on the target)."""
    if profile.charges:
        return 0  # sent without the key
    return sum(tallies[label].statuses.get(200, 0) for label in PAID_OPERATIONS if label in tallies)


def run(
    target: Target,
    report: Report,
    *,
    examples: int = 40,
    log: Callable[[str], None] = lambda line: None,
) -> dict[str, Tally]:
    """Run every operation; the tally of each (cases, statuses, failures) by its label."""
    log("== schemathesis over spec/openapi.yaml" + (" (free requests only)" if target.profile.charges else ""))
    tallies: dict[str, Tally] = {}
    schema = schemathesis.openapi.from_path(str(spec_path()))
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # the spec is validated by the test suite
        label = f"{operation.method.upper()} {operation.path}"
        paid = label in PAID_OPERATIONS and target.profile.charges
        headers = {} if paid else target.auth()
        tally = tallies[label] = Tally()
        strategies = [
            ("examples", st.one_of(operation.get_strategies_from_examples())),
            ("positive", operation.as_strategy(generation_mode=GenerationMode.POSITIVE)),
            ("negative", operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)),
        ]
        for name, strategy in strategies:
            if name == "examples" and not operation.get_strategies_from_examples():
                continue
            _explore(target, strategy, headers, tally, max(5, examples // (4 if name == "examples" else 1)), paid)
        statuses = ", ".join(f"{code}×{n}" for code, n in sorted(tally.statuses.items()))
        rule = f"schemathesis {label}"
        doc = "responses conform to the spec (status codes, content types, schemas, headers); no 5xx; bad data refused"
        if paid:
            doc += " (live: sent without a token, so nothing is charged)"
        if tally.failures:
            for title, message in tally.failures.items():
                report.add(f"{rule}: {title}", doc, message, FAIL)
        elif tally.cases:
            report.add(rule, doc, f"{tally.cases} cases: {statuses}", PASS)
        else:
            report.add(rule, doc, "no case could be generated", SKIP)
        log(f"  {label}: {tally.cases} cases, {len(tally.failures)} kind(s) of failure")
    return tallies


def _explore(
    target: Target, strategy: Any, headers: dict[str, str], tally: Tally, examples: int, tokenless: bool
) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def explore(case: Any) -> None:
        kwargs = case.as_transport_kwargs(base_url=target.base_url, headers=headers)
        if tokenless:
            # schemathesis fills the bearer scheme with generated tokens; none may reach a paid endpoint
            kwargs["headers"] = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "authorization"}
        try:
            response = target.send(kwargs["method"], kwargs["url"], **_request_kwargs(kwargs))
        except (httpx.LocalProtocolError, httpx.InvalidURL, httpx.UnsupportedProtocol, ValueError, TypeError):
            return  # a case httpx will not put on the wire (e.g. a control character in a header)
        except httpx.HTTPError as exc:
            tally.failures.setdefault("transport error", f"{type(exc).__name__}: {exc}")
            return
        tally.cases += 1
        tally.statuses[response.status_code] = tally.statuses.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except BaseExceptionGroup as group:
            for failure in group.exceptions:
                _note(tally, failure, response)
        except AssertionError as failure:
            _note(tally, failure, response)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explore()


def _note(tally: Tally, failure: BaseException, response: httpx.Response) -> None:
    title = str(getattr(failure, "title", None) or type(failure).__name__)
    message = str(getattr(failure, "message", None) or failure).strip().splitlines()
    request = response.request
    tally.failures.setdefault(
        title, f"{request.method} {request.url.path} → {response.status_code}: {' '.join(message)[:300]}"
    )
