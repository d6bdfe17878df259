"""The committed media files and the links that point at them.

Result URLs point at the fake itself: ``{base}/media/{task_id}/{n}.mp4`` for
clips, ``{base}/media/{task_id}/grid.png`` and ``{base}/media/{task_id}/{n}.png``
for imagine results, ``{base}/media/uploads/{upload_id}/{filename}`` for uploads.
Clips are the committed files of ``clips``, tagged per task and index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from . import clips
from .records import IMAGINE, TaskRecord

ASSETS = Path(__file__).resolve().parent.parent / "assets"
GRID_PNG = ASSETS / "grid.png"
IMAGE_PNGS = tuple(ASSETS / f"image-{i}.png" for i in range(4))
UPLOAD_PATH = re.compile(r"/media/uploads/(?P<id>upl_[0-9A-Za-z]+)/")


def expires_at(created_at: float, finished_at: float, *, retention: float, ttl: float, clock: str) -> float:
    """When a finished task's result files stop being served (410 from then on).

    ``record``: ``ttl`` after the task's record is dropped, so every URL a poll hands out is good
    for its whole ``ttl`` and the media still work once the poll answers 404 (docs/evidence.md,
    "media and upload lifetime"). ``end``: ``ttl`` after the task ends (the other reading).
    """
    if clock == "end":
        return finished_at + ttl
    return max(finished_at, created_at + retention) + ttl


def clip_file(video_type: str | None, aspect: str = clips.DEFAULT_ASPECT) -> Path:
    """The committed clip of the task's tier (480p or 720p) and its start frame's aspect ratio."""
    return clips.clip_path(clips.tier_of(video_type), aspect)


@dataclass(frozen=True)
class Links:
    """Absolute URLs for one base (the request's host or ``--public-url``)."""

    base: str

    def videos(self, record: TaskRecord) -> list[str]:
        return [f"{self.base}/media/{record.id}/{n}.mp4" for n in range(record.clips)]

    def images(self, record: TaskRecord) -> list[str]:
        return [f"{self.base}/media/{record.id}/{n}.png" for n in range(4)]

    def grid(self, record: TaskRecord) -> str:
        return f"{self.base}/media/{record.id}/grid.png"

    def media(self, record: TaskRecord) -> list[str]:
        return self.images(record) if record.action == IMAGINE else self.videos(record)

    def upload(self, upload_id: str, filename: str) -> str:
        return f"{self.base}/media/uploads/{upload_id}/{quote(filename)}"


def upload_id_of(url: str) -> str | None:
    """The upload id if ``url`` has the shape of this server's upload links."""
    if url[:4].lower() != "http" or "/media/uploads/upl_" not in url:  # what UPLOAD_PATH needs, seen at once
        return None
    try:
        path = urlsplit(url).path
    except ValueError:  # not a URL at all (e.g. "http://[" is an unclosed IPv6 host)
        return None
    match = UPLOAD_PATH.match(path)
    return match.group("id") if match else None


def safe_filename(name: str | None, content_type: str) -> str:
    base = Path(name or "").name
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "image"
    if "." not in base:
        base += "." + content_type.split("/")[-1]
    return base[:100]
