"""The provider's API as Starlette routes: each reads its request, asks the service once, and answers.

Refusals are ``ApiError``s raised by the service (or by reading the request)
and rendered by ``http.api_error`` in the provider's error body.
"""

from __future__ import annotations

import logging

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..core import dialects
from ..core.errors import ApiError, bad_request
from ..core.faults import FAULT_HEADER
from ..core.media import Links, safe_filename
from ..service import DIALECT_HEADER, Fake, shortened
from .http import JSONResponse, facts, media_type, read_json, submitted

# Malformed multipart parts are answered with a 400; the parser's own warning about them is noise.
logging.getLogger("python_multipart").setLevel(logging.ERROR)


class LinkCache:
    """Result links for a request's own scheme and host (or ``--public-url``), made once per base."""

    def __init__(self, public_url: str | None) -> None:
        self.public_url = public_url
        self._links: dict[str, Links] = {}

    def __call__(self, request: Request) -> Links:
        if self.public_url:
            key = self.public_url
        else:
            scope = request.scope
            key = f"{scope['scheme']}://{request.headers.get('host', '')}{scope.get('root_path', '')}"
        links = self._links.get(key)
        if links is None:
            base = self.public_url or str(request.base_url)
            links = self._links[key] = Links(base.rstrip("/"))
            if len(self._links) > 1000:  # many Host headers: keep the cache bounded
                self._links.clear()
        return links


def provider_routes(fake: Fake) -> list[BaseRoute]:
    links = LinkCache(fake.settings.public_url)
    settings = fake.settings

    def submission(endpoint: str):  # type: ignore[no-untyped-def]
        async def submit(request: Request) -> Response:
            noted = facts(request)
            noted["endpoint"] = endpoint
            account = fake.account(request.headers.get("authorization"), noted)
            body = await read_json(request)
            noted["body"] = shortened(body)
            accepted = await fake.submit(
                endpoint,
                account,
                body,
                key=request.headers.get("idempotency-key"),
                fault_header=request.headers.get(FAULT_HEADER),
                facts=noted,
            )
            return submitted(accepted)

        return submit

    async def poll(request: Request, dialect: str) -> Response:
        noted = facts(request)
        noted["endpoint"] = "poll"
        account = fake.account(request.headers.get("authorization"), noted)
        polled = await fake.poll(
            account, request.path_params["task_id"], fault_header=request.headers.get(FAULT_HEADER), facts=noted
        )
        if dialect == "unified":
            body = dialects.unified_task(
                polled.record,
                polled.view,
                links(request),
                url_shape=settings.unified_url_shape,
                media_ttl=settings.media_ttl_seconds,
                video_items=settings.unified_video_items,
                usd_per_credit=settings.usd_per_credit,
            )
        else:
            body = dialects.mj_task(polled.record, polled.view, links(request), usd_per_credit=settings.usd_per_credit)
        return JSONResponse(body)

    async def get_task(request: Request) -> Response:
        requested = request.headers.get(DIALECT_HEADER)
        return await poll(request, fake.dialect_for(request.headers.get("authorization"), requested))

    async def get_mj_task(request: Request) -> Response:
        return await poll(request, "mj")

    async def upload_image(request: Request) -> Response:
        noted = facts(request)
        noted["endpoint"] = "upload"
        account = fake.account(request.headers.get("authorization"), noted)
        if media_type(request) != "multipart/form-data":
            raise ApiError(415, "Content-Type must be multipart/form-data with a 'file' part", param="file")
        async with request.form(max_files=1, max_fields=16) as form:
            part = form.get("file")
            if not isinstance(part, UploadFile):
                raise bad_request("file is required: send the image as the multipart part 'file'", "file")
            content_type = (part.content_type or "").split(";")[0].strip().lower()
            data = await part.read()
            filename = safe_filename(part.filename, content_type)
        upload = await fake.upload(
            account, filename, content_type, data, fault_header=request.headers.get(FAULT_HEADER), facts=noted
        )
        return JSONResponse(
            {
                "url": links(request).upload(upload.id, upload.filename),
                "filename": upload.filename,
                "content_type": upload.content_type,
                "bytes": upload.size,
                "created_at": int(upload.created_at),
            }
        )

    return [
        Route("/v1/midjourney/generations/video", submission("video"), methods=["POST"]),
        Route("/v1/midjourney/generations", submission("imagine"), methods=["POST"]),
        Route("/v1/midjourney/generations/imagine", submission("imagine"), methods=["POST"]),
        Route("/v1/tasks/{task_id}", get_task, methods=["GET"]),
        Route("/v1/midjourney/{task_id}", get_mj_task, methods=["GET"]),
        Route("/v1/uploads/images", upload_image, methods=["POST"]),
    ]
