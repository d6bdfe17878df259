"""Result files and uploads. Public like the provider's CDN links: no token needed.

Clips are bytes made per task (``service.Fake.media_file``), so ranges are
answered here: one ``bytes=`` range gives 206 with ``Content-Range``, an
unsatisfiable one 416, anything else the whole file (RFC 9110 lets a server
ignore a Range it does not support).
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from ..core.clips import RangeNotSatisfiable, byte_range
from ..files import Files, MediaFile
from ..service import Fake

# Files come from outside (uploads, imported snapshots): whatever their bytes, no browser runs them
# as a page of the fake's origin (docs/security.md).
MEDIA_HEADERS = {"x-content-type-options": "nosniff", "content-security-policy": "default-src 'none'; sandbox"}
SERVED_TYPES = ("image/", "video/")


def _served_type(content_type: str) -> str:
    """The type a file is served as: an image or video type as recorded, anything else as bytes."""
    kind = content_type.split(";")[0].strip().lower()
    return kind if kind.startswith(SERVED_TYPES) and "xml" not in kind else "application/octet-stream"


def _answer(request: Request, found: MediaFile) -> Response:
    kind = _served_type(found.content_type)
    if found.path is not None:
        return FileResponse(found.path, media_type=kind, headers=MEDIA_HEADERS)
    data = found.data or b""
    etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
    headers = {**MEDIA_HEADERS, "accept-ranges": "bytes", "etag": etag}
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range != etag:
        wanted = None  # the client's copy is another file: send the whole new one
    try:
        span = byte_range(wanted, len(data))
    except RangeNotSatisfiable as exc:
        return Response(b"", 416, headers={**headers, "content-range": exc.content_range})
    if span is None:
        return Response(data, media_type=kind, headers=headers)
    first, last = span
    headers["content-range"] = f"bytes {first}-{last}/{len(data)}"
    return Response(data[first : last + 1], 206, media_type=kind, headers=headers)


def media_routes(fake: Fake) -> list[BaseRoute]:
    files = Files(fake)

    async def result(request: Request) -> Response:
        return _answer(request, await files.media_file(request.path_params["task_id"], request.path_params["name"]))

    async def upload(request: Request) -> Response:
        return _answer(request, await files.upload_file(request.path_params["upload_id"]))

    return [
        Route("/media/uploads/{upload_id}/{filename}", upload, methods=["GET", "HEAD"]),
        Route("/media/{task_id}/{name}", result, methods=["GET", "HEAD"]),
    ]
