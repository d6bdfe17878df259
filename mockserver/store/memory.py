"""The default store: plain dicts in one process."""

from __future__ import annotations

from ..records import TaskRecord, UploadRecord


class MemoryStore:
    def __init__(self) -> None:
        self._tasks: dict[str, TaskRecord] = {}
        self._keys: dict[tuple[str, str], str] = {}
        self._uploads: dict[str, UploadRecord] = {}

    def put_task(self, record: TaskRecord) -> None:
        self._tasks[record.id] = record

    def get_task(self, task_id: str) -> TaskRecord | None:
        return self._tasks.get(task_id)

    def claim_idempotency_key(self, account: str, key: str, task_id: str) -> str:
        return self._keys.setdefault((account, key), task_id)

    def idempotent_task(self, account: str, key: str) -> str | None:
        return self._keys.get((account, key))

    def put_upload(self, upload: UploadRecord) -> None:
        self._uploads[upload.id] = upload

    def get_upload(self, upload_id: str) -> UploadRecord | None:
        return self._uploads.get(upload_id)

    def tasks(self, account: str | None = None) -> list[TaskRecord]:
        return [t for t in self._tasks.values() if account is None or t.account == account]

    def reset(self, account: str | None = None) -> None:
        if account is None:
            self._tasks.clear()
            self._keys.clear()
            self._uploads.clear()
            return
        self._tasks = {k: v for k, v in self._tasks.items() if v.account != account}
        self._keys = {k: v for k, v in self._keys.items() if k[0] != account}
        self._uploads = {k: v for k, v in self._uploads.items() if v.account != account}
