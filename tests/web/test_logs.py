"""A credential in a query string (``?token=``, ``?api_key=``) is never written: not in uvicorn's
access log, the journal, or the HAR export (``core.journal.redacted_query``, ``web/logs.py``)."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from mockserver.core.journal import redacted_query
from mockserver.testing import ServerProcess


@pytest.mark.parametrize(
    ("query", "written"),
    [
        ("token=abc", "token=[redacted]"),
        ("a=1&api_key=k&b=2", "a=1&api_key=[redacted]&b=2"),
        ("Access%5FToken=x&session=y", "Access%5FToken=[redacted]&session=[redacted]"),
        ("idempotency-key=k1&language=en", "idempotency-key=k1&language=en"),
        ("token", "token"),
        ("", ""),
    ],
)
def test_credential_like_parameters_are_redacted(query: str, written: str) -> None:
    assert redacted_query(query) == written


@pytest.mark.e2e
def test_e2e_no_query_credential_reaches_the_access_log_the_journal_or_the_har(tmp_path: Path) -> None:
    secrets = [f"s{uuid.uuid4().hex}" for _ in range(3)]
    log = tmp_path / "server.log"
    with (
        ServerProcess(["--log-level", "info", "--task-seconds", "0"], log=log) as server,
        httpx.Client(base_url=server.base_url, timeout=10) as c,
    ):
        auth = {"Authorization": "Bearer log-test"}
        c.get("/v1/tasks/task_x", params={"token": secrets[0]}, headers=auth)
        c.get("/v1/tasks/task_y", params={"api_key": secrets[1], "language": "en"}, headers=auth)
        c.get("/__mock__/ledger", params={"token": secrets[2]})
        journal = c.get("/__mock__/requests").text
        har = c.get("/__mock__/requests.har").text
        assert journal.count("[redacted]") >= 2
    text = log.read_text()
    assert "GET /v1/tasks/task_x?token=[redacted]" in text, text  # the line is still written
    for secret in secrets:
        assert secret not in text and secret not in journal and secret not in har
