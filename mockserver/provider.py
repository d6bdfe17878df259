"""The provider's API surface and its result files, as Starlette routes (glue only).

Each route reads the request, asks the core (spec, rules, lifecycle, ledger,
scenarios) and answers in the provider's format. Faults chosen for a request
are applied here (refusals, latency, task outcomes) or marked for the wire
(``drop``/``truncate``, done by ``middleware.WireFaults``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from . import dialects, ledger, lifecycle, rules, scenarios
from .context import Context
from .errors import NOT_FOUND, PAYMENT_REQUIRED, PERMISSION, RATE_LIMIT, ApiError, bad_request
from .http import account_of, idempotency_key, media_type, read_json, submitted
from .jsonio import JSONResponse
from .media import GRID_PNG, IMAGE_PNGS, clip_file, safe_filename, upload_id_of
from .records import FAILURE_OUTCOME, IMAGINE, NEVER_OUTCOME, VIDEO, TaskRecord, UploadRecord

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/gif")
# Malformed multipart parts are answered with a 400; the parser's own warning about them is noise.
logging.getLogger("python_multipart").setLevel(logging.ERROR)
SCENARIO_HEADER = "x-mock-scenario"


def note(request: Request, **facts: Any) -> None:
    """Facts about this request for the journal (read by ``middleware.Journal``)."""
    journal: dict[str, Any] = request.scope.setdefault("state", {}).setdefault("mock_journal", {})
    journal.update({k: v for k, v in facts.items() if v is not None})


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

    # -- what every provider request goes through ------------------------------------

    def _admit(self, request: Request, endpoint: str) -> tuple[str, scenarios.Scenario | None]:
        """Account (401), rate limit (429), and the scenario the header asks for."""
        account = account_of(request)
        note(request, account=account, endpoint=endpoint)
        self._rate_limit(account)
        raw = request.headers.get(SCENARIO_HEADER)
        return account, scenarios.parse(raw) if raw is not None else None

    def _rate_limit(self, account: str) -> None:
        limit = self.ctx.settings.rate_limit_per_minute
        if limit <= 0:
            return
        now = self.ctx.clock.now()
        window = int(now // 60)
        if self.ctx.store.hit(account, window) > limit:
            retry = max(1, math.ceil((window + 1) * 60 - now))
            raise ApiError(
                429,
                f"Rate limit reached: {limit} requests per minute; retry after {retry} s",
                type=RATE_LIMIT,
                headers={"Retry-After": str(retry)},
            )

    def _from_rules(self, endpoint: str, account: str, body: dict[str, Any] | None) -> scenarios.Scenario | None:
        store = self.ctx.store
        for rule in store.rules():
            if rule.scenario.kind.task and endpoint not in ("video", "imagine"):
                continue
            if not rule.matches(endpoint, account, body):
                continue
            if rule.probability < 1.0 and self.ctx.rng.random() >= rule.probability:
                continue
            if store.fire_rule(rule.id):
                return rule.scenario
        return None

    async def _apply(self, request: Request, scenario: scenarios.Scenario | None) -> None:
        """Request-level faults: latency, refusals, and wire faults marked for the middleware."""
        if scenario is None:
            return
        note(request, scenario=scenario.name)
        delay = scenarios.delay_seconds(scenario, self.ctx.rng)
        if delay:
            await anyio.sleep(delay)
        error = scenarios.request_error(scenario)
        if error is not None:
            raise error
        if scenario.name in ("drop", "truncate"):
            request.scope.setdefault("state", {})["mock_wire_fault"] = scenario.name

    # -- submissions --------------------------------------------------------------------

    async def _submission(
        self, request: Request, endpoint: str, schema: str
    ) -> tuple[str, str | None, dict[str, Any] | Response, scenarios.Scenario | None]:
        """Account, rate limit, JSON body, schema; then an idempotent replay, or the chosen faults."""
        account, chosen = self._admit(request, endpoint)
        key = idempotency_key(request)
        body = await read_json(request)
        note(request, body=shortened(body))
        self.ctx.spec.check(schema, body, relax=self.ctx.relax if schema == "VideoRequest" else ())
        if key is not None:
            earlier = self.ctx.store.idempotent_task(account, key)
            if earlier is not None:
                await self._apply(request, chosen)
                note(request, task_id=earlier, replayed=True)
                return account, key, submitted(earlier, replayed=True), chosen
        chosen = chosen or scenarios.from_prompt(body.get("prompt")) or self._from_rules(endpoint, account, body)
        await self._apply(request, chosen)
        return account, key, body, chosen

    def _accept(self, request: Request, record: TaskRecord, key: str | None) -> Response:
        store = self.ctx.store
        self.ctx.sweep()
        self._check_balance(record)
        if key is not None:
            winner = store.claim_idempotency_key(record.account, key, record.id)
            if winner != record.id:
                note(request, task_id=winner, replayed=True)
                return submitted(winner, replayed=True)
        store.put_task(record)
        note(request, task_id=record.id)
        return submitted(record.id)

    def _check_balance(self, record: TaskRecord) -> None:
        balance = self.ctx.balance(record.account)
        if balance is None or record.charge == 0:
            return
        left = balance - ledger.spent(self.ctx.store.tasks(record.account), self.ctx.clock.now())
        if record.charge > left + 1e-9:
            raise ApiError(
                402,
                f"insufficient balance: this task costs {record.charge:g} ({record.price_key} × {record.quantity}), "
                f"{max(left, 0):g} left",
                type=PAYMENT_REQUIRED,
                param=None,
            )

    def _new_record(self, account: str, chosen: scenarios.Scenario | None, **fields: Any) -> TaskRecord:
        ctx = self.ctx
        outcome = scenarios.task_outcome(chosen) if chosen is not None else None
        return TaskRecord(
            id=ctx.new_id("task"),
            account=account,
            created_at=ctx.clock.now(),
            duration=ctx.settings.task_seconds,
            outcome=outcome[0] if outcome else "success",
            fail_reason=outcome[1] if outcome else "",
            unit_price=ledger.unit_price(ctx.prices, fields["price_key"]),
            finish_after_polls=ctx.settings.finish_after_polls,
            **fields,
        )

    async def create_video(self, request: Request) -> Response:
        ctx = self.ctx
        account, key, body, chosen = await self._submission(request, "video", "VideoRequest")
        if isinstance(body, Response):
            return body
        job = rules.video_job(
            body,
            policy=ctx.settings.batch_size_policy,
            allowed_batch_sizes=ctx.batch_sizes,
            defaults=ctx.video_defaults,
            parent=self._parent(account, body.get("task_id")),
            max_frame_bytes=ctx.settings.max_frame_bytes,
            measure_upload=self._upload_size,
        )
        return self._accept(request, self.video_record(account, chosen, job), key)

    def video_record(self, account: str, chosen: scenarios.Scenario | None, job: rules.VideoJob) -> TaskRecord:
        """The task a video submission the rules accepted becomes."""
        return self._new_record(
            account,
            chosen,
            action=VIDEO,
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
                "image_url": shortened(job.image_url),
                "end_url": shortened(job.end_url),
                "parent_task_id": job.parent_task_id,
                "index": job.index,
                "notes": list(job.notes),
            },
        )

    async def create_imagine(self, request: Request) -> Response:
        ctx = self.ctx
        account, key, body, chosen = await self._submission(request, "imagine", "ImagineRequest")
        if isinstance(body, Response):
            return body
        speed = body.get("speed") or ctx.spec.default("ImagineRequest", "speed")
        prompt = rules.imagine_prompt(body.get("prompt"))
        for n, url in enumerate(body.get("image_urls") or []):
            rules.frame_within_limit(url, f"image_urls[{n}]", ctx.settings.max_frame_bytes, self._upload_size)
        record = self._new_record(
            account,
            chosen,
            action=IMAGINE,
            prompt=prompt,
            mode=str(speed).upper(),
            clips=4,
            price_key=rules.imagine_price_key(speed),
            quantity=1,
            params={"size": body.get("size"), "speed": speed},
        )
        return self._accept(request, record, key)

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

    # -- polls ----------------------------------------------------------------------------

    def _expired(self, record: TaskRecord) -> bool:
        return self.ctx.clock.now() >= record.created_at + self.ctx.settings.task_retention_seconds

    async def _polled(self, request: Request) -> tuple[TaskRecord, lifecycle.TaskView]:
        account, chosen = self._admit(request, "poll")
        task_id = request.path_params["task_id"]
        note(request, task_id=task_id)
        await self._apply(request, chosen or self._from_rules("poll", account, None))
        store, now = self.ctx.store, self.ctx.clock.now()
        record = store.get_task(task_id)
        if record is None or self._expired(record):
            raise ApiError(404, f"task {task_id} not found", type=NOT_FOUND, param="task_id")
        if record.account != account:
            raise ApiError(403, f"task {task_id} belongs to another account", type=PERMISSION, param="task_id")
        if record.finish_after_polls is not None:
            record = store.update_task(task_id, lambda r: lifecycle.counted_poll(r, now)) or record
        return record, lifecycle.view(record, now)

    async def get_task(self, request: Request) -> Response:
        record, view = await self._polled(request)
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
        record, view = await self._polled(request)
        return JSONResponse(dialects.mj_task(record, view, self.ctx.links(request)))

    # -- uploads --------------------------------------------------------------------------

    async def upload_image(self, request: Request) -> Response:
        ctx = self.ctx
        account, chosen = self._admit(request, "upload")
        await self._apply(request, chosen or self._from_rules("upload", account, None))
        if media_type(request) != "multipart/form-data":
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


def shortened(value: Any, limit: int = 200) -> Any:
    """A copy for the journal in which long strings (data: URLs) keep only their head."""
    if isinstance(value, str):
        return value if len(value) <= limit else f"{value[:limit]}… ({len(value)} characters)"
    if isinstance(value, list):
        return [shortened(v, limit) for v in value]
    if isinstance(value, dict):
        return {k: shortened(v, limit) for k, v in value.items()}
    return value


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
        if record is None or record.outcome in (FAILURE_OUTCOME, NEVER_OUTCOME):
            raise missing
        now = ctx.clock.now()
        view = lifecycle.view(record, now)
        if view.status is not lifecycle.Status.SUCCESS:
            raise missing
        if view.finished_at is not None and now >= view.finished_at + ctx.settings.media_ttl_seconds:
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
