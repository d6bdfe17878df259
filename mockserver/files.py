"""The files the fake keeps and serves: uploads (``POST /v1/uploads/images``) and the result files at
``/media/{task_id}/…``, each served until its lifetime ends (docs/evidence.md, "media and upload
lifetime"). Like the provider service it works on, it knows nothing of HTTP.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

from .core import clips, images, lifecycle, media
from .core.errors import NOT_FOUND, ApiError, bad_request
from .core.media import GRID_PNG, IMAGE_PNGS, clip_file
from .core.records import CANCEL_OUTCOME, FAILURE_OUTCOME, IMAGINE, NEVER_OUTCOME, TaskRecord, UploadRecord
from .service import Facts, Fake
from .settings import MiB


@dataclass(frozen=True)
class MediaFile:
    """What a media URL serves: a file on disk or bytes, and its type."""

    content_type: str
    path: Path | None = None
    data: bytes | None = None


@functools.lru_cache(maxsize=32)
def _asset(path: Path) -> bytes:
    """A committed clip's bytes, read once."""
    return path.read_bytes()


def _mib(size: int) -> str:
    """`` (20 MiB)`` for a whole number of MiB, as the limits are written."""
    return f" ({size // MiB} MiB)" if size % MiB == 0 else ""


class Files:
    """Uploads and result files over one provider service (``Fake``): its store, clock and faults."""

    def __init__(self, fake: Fake) -> None:
        self.fake = fake
        self.store = fake.store
        self.clock = fake.clock
        self.settings = fake.settings

    async def upload(
        self,
        account: str,
        filename: str,
        content_type: str,
        data: bytes,
        *,
        fault_header: str | None = None,
        facts: Facts | None = None,
    ) -> UploadRecord:
        """An uploaded image, kept for ``image_urls`` and ``end_url`` (uploads page: "20MB", read as 20 MiB,
        413 beyond; "content_type: detected MIME type", whatever the part declared)."""
        await self.fake.apply_fault(await self.fake.choose_fault(fault_header, "upload", account), facts)
        limit = self.settings.max_upload_bytes
        if len(data) > limit:
            raise ApiError(
                413, f"file is {len(data)} bytes; an upload may be at most {limit} bytes{_mib(limit)}", param="file"
            )
        if not data:
            raise bad_request("file is empty", "file")
        info = images.sniff(data)
        if info is None:
            shown = content_type or "unknown"
            raise bad_request(
                f"Unsupported Format: file must be a JPEG, PNG, GIF or WebP image (declared {shown}, not one)", "file"
            )
        upload = UploadRecord(
            id=self.fake.new_id("upl"),
            account=account,
            filename=filename,
            content_type=info.mime,
            size=len(data),
            created_at=self.clock.now(),
            data=data,
        )
        await self._store_within_quota(upload)
        return upload

    async def _store_within_quota(self, upload: UploadRecord) -> None:
        """Evict expired uploads, then store the upload, or refuse it (413) beyond the account's or the
        server's byte quota: one atomic store call, against the store's running totals (no listing)."""
        refused = await self.store.put_upload(
            upload,
            account_quota=self.settings.upload_quota_bytes,
            total_quota=self.settings.upload_total_bytes,
            evict_by=self.clock.now() - self.settings.upload_ttl_seconds,
        )
        if refused is None:
            return
        if refused.scope == "account":
            raise ApiError(
                413,
                f"this account keeps {refused.held} bytes of uploads; {upload.size} more would pass its quota of "
                f"{self.settings.upload_quota_bytes} (uploads expire "
                f"{self.settings.upload_ttl_seconds:g} s after upload)",
                param="file",
            )
        raise ApiError(413, "the server's upload storage is full; retry when older uploads expire", param="file")

    async def media_file(self, task_id: str, name: str) -> MediaFile:
        """The file a result URL names (404 unknown or not finished, 410 past its lifetime)."""
        record = await self.store.get_task(task_id)
        missing = ApiError(404, f"no media at /media/{task_id}/{name}", type=NOT_FOUND, param=None)
        if record is None or record.outcome in (FAILURE_OUTCOME, NEVER_OUTCOME, CANCEL_OUTCOME):
            raise missing
        now = self.clock.now()
        view = lifecycle.view(record, now)
        if view.status is not lifecycle.Status.SUCCESS:
            raise missing
        if now >= self.media_expires_at(record, view):
            raise ApiError(410, f"media at /media/{task_id}/{name} has expired", type=NOT_FOUND, param=None)
        stem, _, ext = name.partition(".")
        number = int(stem) if stem.isascii() and stem.isdigit() and len(stem) < 4 else None
        if record.action == IMAGINE:
            if name == "grid.png":
                return MediaFile("image/png", path=GRID_PNG)
            if ext == "png" and number is not None and number < 4:
                return MediaFile("image/png", path=IMAGE_PNGS[number])
            raise missing
        if ext == "mp4" and number is not None and number < record.clips:
            aspect = str(record.params.get("aspect") or clips.DEFAULT_ASPECT)
            path = clip_file(record.video_type, aspect)
            # Every clip's bytes differ per task and index (a box readers skip), as real clips do.
            return MediaFile("video/mp4", data=clips.tagged(_asset(path), task_id, number))
        raise missing

    def media_expires_at(self, record: TaskRecord, view: lifecycle.TaskView) -> float:
        """When a finished task's result files start answering 410 (``--media-clock``)."""
        s = self.settings
        ended = view.finished_at if view.finished_at is not None else record.created_at
        exact = media.expires_at(
            record.created_at, ended, retention=s.task_retention_seconds, ttl=s.media_ttl_seconds, clock=s.media_clock
        )
        return float(math.floor(exact))  # the whole second expires_at shows: the clip stops when it says

    async def upload_file(self, upload_id: str) -> MediaFile:
        """An uploaded file, served until its lifetime ends (then 410, and it is evicted)."""
        upload = await self.store.get_upload(upload_id)
        if upload is None:
            raise ApiError(404, f"no upload {upload_id}", type=NOT_FOUND, param=None)
        if self.clock.now() >= upload.created_at + self.settings.upload_ttl_seconds:
            await self.store.delete_upload(upload_id)
            raise ApiError(410, f"upload {upload_id} has expired", type=NOT_FOUND, param=None)
        return MediaFile(upload.content_type, data=upload.data)
