"""Result files and uploads. Public like the provider's CDN links: no token needed."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from ..service import Fake, MediaFile


def _answer(found: MediaFile) -> Response:
    if found.path is not None:
        return FileResponse(found.path, media_type=found.content_type)
    return Response(found.data, media_type=found.content_type)


def media_routes(fake: Fake) -> list[BaseRoute]:
    async def result(request: Request) -> Response:
        return _answer(fake.media_file(request.path_params["task_id"], request.path_params["name"]))

    async def upload(request: Request) -> Response:
        return _answer(fake.upload_file(request.path_params["upload_id"]))

    return [
        Route("/media/uploads/{upload_id}/{filename}", upload, methods=["GET", "HEAD"]),
        Route("/media/{task_id}/{name}", result, methods=["GET", "HEAD"]),
    ]
