"""The HTTP shell: Starlette routes that glue the spec, the rules, the lifecycle and the store.

Nothing here decides what is valid or what a task looks like; it reads the
request, asks the core, and writes the answer in the provider's format.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from ulid import ULID

from . import dialects, lifecycle, rules
from .clock import Clock, ShiftedClock
from .errors import AUTHENTICATION, NOT_FOUND, PERMISSION, SERVER, ApiError, bad_request, error_body
from .media import GRID_PNG, IMAGE_PNGS, Links, clip_file, safe_filename, upload_id_of
from .records import IMAGINE, VIDEO, TaskRecord, UploadRecord
from .settings import Settings
from .spec import Spec
from .store import MemoryStore, Store

JSON_TYPES = ("application/json",)
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
MAX_KEY_LENGTH = 255


@dataclass
class Context:
    """What every route needs, built once per app."""

    settings: Settings
    spec: Spec
    clock: Clock
    store: Store

    def __post_init__(self) -> None:
        self.batch_sizes = tuple(self.spec.enum("VideoRequest", "batch_size"))
        self.video_defaults = {
            name: self.spec.default("VideoRequest", name) for name in ("video_type", "motion", "animate_mode")
        }
        self.relax = ("batch_size",) if self.settings.batch_size_policy == rules.COERCE else ()
        # Compile the validators now, not on the first request.
        self.spec.validator("VideoRequest", relax=self.relax)
        self.spec.validator("ImagineRequest")

    def links(self, request: Request) -> Links:
        base = self.settings.public_url or str(request.base_url)
        return Links(base.rstrip("/"))

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{ULID.from_timestamp(self.clock.now())}"


# -- reading requests -------------------------------------------------------------------


class BodyTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes", param=None)


class BodyLimit:
    """Refuse bodies over the limit with 413: at once when Content-Length says so,
    otherwise as soon as the streamed bytes pass it, never holding more than the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    error = BodyTooLarge(self.limit)
                    await JSONResponse(error.body(), 413, headers={"connection": "close"})(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)


def _media_type(request: Request) -> str | None:
    raw = request.headers.get("content-type")
    if raw is None:
        return None
    return raw.split(";", 1)[0].strip().lower()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or the provider's 400/415."""
    media_type = _media_type(request)
    if media_type is not None and media_type not in JSON_TYPES and not media_type.endswith("+json"):
        raise ApiError(415, f"Content-Type must be application/json (got {media_type or 'empty'})", param=None)
    raw = await request.body()
    if not raw.strip():
        raise bad_request("request body is empty; a JSON object is required")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise bad_request("request body is not valid UTF-8") from None
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"malformed JSON: {exc}") from None
    return rules.refuse_non_object(body)


def account_of(request: Request) -> str:
    """'Authorization: Bearer <token>'; each token is its own account. 401 otherwise."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        reason = "missing Authorization header" if not header else "Authorization must be 'Bearer <token>'"
        raise ApiError(401, f"{reason}: a bearer token is required", type=AUTHENTICATION, param=None)
    return account_id(token)


def account_id(token: str) -> str:
    """The account a token stands for; the token itself is never kept."""
    return "acct_" + hashlib.sha256(token.encode()).hexdigest()[:16]


def idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not key.strip() or len(key) > MAX_KEY_LENGTH:
        raise bad_request(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters", "Idempotency-Key")
    return key


# -- answers ----------------------------------------------------------------------------


def submitted(task_id: str, *, replayed: bool = False) -> JSONResponse:
    headers = {"idempotency-replayed": "true"} if replayed else None
    return JSONResponse({"code": 200, "data": [{"status": "submitted", "task_id": task_id}]}, headers=headers)


# -- the provider's API -------------------------------------------------------------------


class ProviderApi:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/midjourney/generations/video", self.create_video, methods=["POST"]),
            Route("/v1/midjourney/generations", self.create_imagine, methods=["POST"]),
            Route("/v1/midjourney/generations/imagine", self.create_imagine, methods=["POST"]),
            Route("/v1/tasks/{task_id}", self.get_task, methods=["GET"]),
            Route("/v1/midjourney/{task_id}", self.get_mj_task, methods=["GET"]),
            Route("/v1/uploads/images", self.upload_image, methods=["POST"]),
        ]

    # submissions

    async def _submission(self, request: Request) -> tuple[str, str | None, dict[str, Any] | Response]:
        """Common head of a submission: account, idempotency replay, JSON body."""
        account = account_of(request)
        key = idempotency_key(request)
        if key is not None:
            earlier = self.ctx.store.idempotent_task(account, key)
            if earlier is not None:
                return account, key, submitted(earlier, replayed=True)
        return account, key, await read_json(request)

    def _accept(self, record: TaskRecord, key: str | None) -> JSONResponse:
        store = self.ctx.store
        if key is not None:
            winner = store.claim_idempotency_key(record.account, key, record.id)
            if winner != record.id:
                return submitted(winner, replayed=True)
        store.put_task(record)
        return submitted(record.id)

    async def create_video(self, request: Request) -> Response:
        ctx = self.ctx
        account, key, body = await self._submission(request)
        if isinstance(body, Response):
            return body
        ctx.spec.check("VideoRequest", body, relax=ctx.relax)
        job = rules.video_job(
            body,
            policy=ctx.settings.batch_size_policy,
            allowed_batch_sizes=ctx.batch_sizes,
            defaults=ctx.video_defaults,
            parent=self._parent(account, body.get("task_id")),
            max_frame_bytes=ctx.settings.max_frame_bytes,
            measure_upload=self._upload_size,
        )
        record = TaskRecord(
            id=ctx.new_id("task"),
            account=account,
            action=VIDEO,
            created_at=ctx.clock.now(),
            duration=ctx.settings.task_seconds,
            prompt=job.prompt,
            mode="FAST",
            clips=job.batch_size,
            price_key=job.price_key,
            quantity=job.quantity,
            video_type=job.video_type,
            params={
                "requested_video_type": job.requested_video_type,
                "requested_batch_size": job.requested_batch_size,
                "motion": job.motion,
                "animate_mode": job.animate_mode,
                "image_url": _shorten(job.image_url),
                "end_url": _shorten(job.end_url),
                "parent_task_id": job.parent_task_id,
                "index": job.index,
                "notes": list(job.notes),
            },
        )
        return self._accept(record, key)

    async def create_imagine(self, request: Request) -> Response:
        ctx = self.ctx
        account, key, body = await self._submission(request)
        if isinstance(body, Response):
            return body
        ctx.spec.check("ImagineRequest", body)
        speed = body.get("speed") or ctx.spec.default("ImagineRequest", "speed")
        prompt = rules.imagine_prompt(body.get("prompt"))
        for n, url in enumerate(body.get("image_urls") or []):
            rules.frame_within_limit(url, f"image_urls[{n}]", ctx.settings.max_frame_bytes, self._upload_size)
        record = TaskRecord(
            id=ctx.new_id("task"),
            account=account,
            action=IMAGINE,
            created_at=ctx.clock.now(),
            duration=ctx.settings.task_seconds,
            prompt=prompt,
            mode=str(speed).upper(),
            clips=4,
            price_key=rules.imagine_price_key(speed),
            quantity=1,
            params={"size": body.get("size"), "speed": speed},
        )
        return self._accept(record, key)

    def _parent(self, account: str, task_id: Any) -> rules.ParentTask | None:
        if not isinstance(task_id, str) or not task_id:
            return None
        record = self.ctx.store.get_task(task_id)
        if record is None or record.account != account or self._expired(record):
            return None
        state = lifecycle.view(record, self.ctx.clock.now())
        return rules.ParentTask(action=record.action, status=state.status.value, prompt=record.prompt)

    def _upload_size(self, url: str) -> int | None:
        upload_id = upload_id_of(url)
        upload = self.ctx.store.get_upload(upload_id) if upload_id else None
        return upload.size if upload else None

    # polls

    def _expired(self, record: TaskRecord) -> bool:
        return self.ctx.clock.now() >= record.created_at + self.ctx.settings.task_retention_seconds

    def _polled(self, request: Request) -> tuple[TaskRecord, lifecycle.TaskView]:
        account = account_of(request)
        task_id = request.path_params["task_id"]
        record = self.ctx.store.get_task(task_id)
        if record is None or self._expired(record):
            raise ApiError(404, f"task {task_id} not found", type=NOT_FOUND, param="task_id")
        if record.account != account:
            raise ApiError(403, f"task {task_id} belongs to another account", type=PERMISSION, param="task_id")
        return record, lifecycle.view(record, self.ctx.clock.now())

    async def get_task(self, request: Request) -> Response:
        record, view = self._polled(request)
        links = self.ctx.links(request)
        settings = self.ctx.settings
        if settings.task_dialect == "unified":
            return JSONResponse(
                dialects.unified_task(
                    record, view, links, url_shape=settings.unified_url_shape, media_ttl=settings.media_ttl_seconds
                )
            )
        return JSONResponse(dialects.mj_task(record, view, links))

    async def get_mj_task(self, request: Request) -> Response:
        record, view = self._polled(request)
        return JSONResponse(dialects.mj_task(record, view, self.ctx.links(request)))

    # uploads

    async def upload_image(self, request: Request) -> Response:
        ctx = self.ctx
        account = account_of(request)
        if _media_type(request) != "multipart/form-data":
            raise ApiError(415, "Content-Type must be multipart/form-data with a 'file' part", param="file")
        async with request.form(max_files=1, max_fields=16) as form:
            part = form.get("file")
            if not isinstance(part, UploadFile):
                raise bad_request("file is required: send the image as the multipart part 'file'", "file")
            content_type = (part.content_type or "").split(";")[0].strip().lower()
            if content_type not in IMAGE_TYPES:
                raise bad_request(
                    f"file must be an image ({', '.join(IMAGE_TYPES)}), not {content_type or 'unknown'}", "file"
                )
            data = await part.read()
            filename = safe_filename(part.filename, content_type)
        if not data:
            raise bad_request("file is empty", "file")
        upload = UploadRecord(
            id=ctx.new_id("upl"),
            account=account,
            filename=filename,
            content_type=content_type,
            size=len(data),
            created_at=ctx.clock.now(),
            data=data,
        )
        ctx.store.put_upload(upload)
        return JSONResponse(
            {
                "url": ctx.links(request).upload(upload.id, filename),
                "filename": filename,
                "content_type": content_type,
                "bytes": upload.size,
                "created_at": int(upload.created_at),
            }
        )


def _shorten(url: str | None, limit: int = 200) -> str | None:
    """Keep a readable head of a frame URL in the task record, never a whole data: URL."""
    if url is None or len(url) <= limit:
        return url
    return f"{url[:limit]}… ({len(url)} characters)"


# -- media ------------------------------------------------------------------------------


class MediaFiles:
    """Result files. Public like the provider's CDN links: no token needed."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/media/uploads/{upload_id}/{filename}", self.upload, methods=["GET", "HEAD"]),
            Route("/media/{task_id}/{name}", self.result, methods=["GET", "HEAD"]),
        ]

    async def result(self, request: Request) -> Response:
        ctx = self.ctx
        record = ctx.store.get_task(request.path_params["task_id"])
        name: str = request.path_params["name"]
        missing = ApiError(404, f"no media at {request.url.path}", type=NOT_FOUND, param=None)
        if record is None:
            raise missing
        view = lifecycle.view(record, ctx.clock.now())
        if view.status is not lifecycle.Status.SUCCESS:
            raise missing
        if view.finished_at is not None and ctx.clock.now() >= view.finished_at + ctx.settings.media_ttl_seconds:
            raise ApiError(410, f"media at {request.url.path} has expired", type=NOT_FOUND, param=None)
        stem, _, ext = name.partition(".")
        if record.action == IMAGINE:
            if name == "grid.png":
                return FileResponse(GRID_PNG, media_type="image/png")
            if ext == "png" and stem.isdigit() and int(stem) < 4:
                return FileResponse(IMAGE_PNGS[int(stem)], media_type="image/png")
            raise missing
        if ext == "mp4" and stem.isdigit() and int(stem) < record.clips:
            return FileResponse(clip_file(record.video_type), media_type="video/mp4")
        raise missing

    async def upload(self, request: Request) -> Response:
        upload = self.ctx.store.get_upload(request.path_params["upload_id"])
        if upload is None:
            raise ApiError(404, f"no upload at {request.url.path}", type=NOT_FOUND, param=None)
        return Response(upload.data, media_type=upload.content_type)


# -- errors -----------------------------------------------------------------------------


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), exc.status, headers=exc.headers or None)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    status = exc.status_code
    if status == 404:
        message = f"no route for {request.method} {request.url.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    kind = NOT_FOUND if status == 404 else "invalid_request_error"
    return JSONResponse(error_body(status, message, kind), status, headers=exc.headers)


async def _server_error(request: Request, exc: Exception) -> Response:
    return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}", SERVER), 500)


# -- assembly ---------------------------------------------------------------------------


def spec_routes(spec: Spec) -> list[BaseRoute]:
    async def as_yaml(request: Request) -> Response:
        return Response(spec.yaml_text, media_type="application/yaml")

    async def as_json(request: Request) -> Response:
        return Response(spec.json_bytes, media_type="application/json")

    return [Route("/openapi.yaml", as_yaml), Route("/openapi.json", as_json)]


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    spec: Spec | None = None,
) -> Starlette:
    """The fake as an ASGI app. Every collaborator can be handed in (tests hand in a virtual clock)."""
    ctx = Context(
        settings=(settings or Settings()).validated(),
        spec=spec or Spec(),
        clock=clock or ShiftedClock(),
        store=store if store is not None else MemoryStore(),
    )
    routes: list[BaseRoute] = [*ProviderApi(ctx).routes(), *MediaFiles(ctx).routes(), *spec_routes(ctx.spec)]
    if ctx.settings.control:
        from .control import control_app

        routes.append(Mount("/__mock__", app=control_app(ctx)))
    app = Starlette(
        routes=routes,
        middleware=[Middleware(BodyLimit, limit=ctx.settings.max_body_bytes)],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _server_error},
    )
    app.router.redirect_slashes = False  # a stray slash is a 404, as on the provider, not a redirect
    app.state.ctx = ctx
    return app


def app_from_env() -> Starlette:
    """Factory for ``uvicorn --factory`` and worker processes: settings from ``MOCKSERVER_*``."""
    return create_app(Settings.from_env())
