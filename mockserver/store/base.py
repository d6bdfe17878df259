"""The ``Store`` protocol: everything the fake keeps goes through these methods."""

from __future__ import annotations

from typing import Protocol

from ..records import TaskRecord, UploadRecord


class Store(Protocol):
    def put_task(self, record: TaskRecord) -> None: ...

    def get_task(self, task_id: str) -> TaskRecord | None: ...

    def claim_idempotency_key(self, account: str, key: str, task_id: str) -> str:
        """Bind ``key`` to ``task_id`` unless it is bound already; return the bound task id."""
        ...

    def idempotent_task(self, account: str, key: str) -> str | None: ...

    def put_upload(self, upload: UploadRecord) -> None: ...

    def get_upload(self, upload_id: str) -> UploadRecord | None: ...

    def tasks(self, account: str | None = None) -> list[TaskRecord]: ...

    def reset(self, account: str | None = None) -> None: ...
