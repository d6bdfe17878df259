"""The provider's API: each route reads its request, asks the service once, and answers.

The four hot routes (submissions and polls) are plain ASGI callables, not Starlette
endpoints: ``edge.Edge`` hands them a request straight from its own path table
(``ProviderRoutes.find``), so a submission or a poll builds no ``Request``, walks no
router and runs no exception middleware; their answers are written as two ASGI
messages with header lists made once. The same callables are also registered as
Starlette routes (the router answers what the table leaves to it: ``HEAD``, a
``root_path``), and ``POST /v1/uploads/images`` (multipart) stays a Starlette endpoint.

Refusals are ``ApiError``s raised by the service (or by reading the request), written
in the provider's error body here (``http.api_error`` for the Starlette endpoint).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ..core import dialects, ledger
from ..core.accounts import bearer_token
from ..core.errors import ApiError, bad_request
from ..core.faults import FAULT_HEADER
from ..core.jsonio import dumps
from ..core.media import Links, safe_filename
from ..files import Files
from ..service import DIALECT_HEADER, Facts, Fake, shortened
from .http import JOURNAL_FACTS, JSON_TYPES, JSONResponse, facts_of, json_object, media_type

# Malformed multipart parts are answered with a 400; the parser's own warning about them is noise.
logging.getLogger("python_multipart").setLevel(logging.ERROR)

ASGIHandler = Callable[[Scope, Receive, Send], Awaitable[None]]

AUTHORIZATION = b"authorization"
CONTENT_TYPE = b"content-type"
IDEMPOTENCY_KEY = b"idempotency-key"
FAULT = FAULT_HEADER.lower().encode()
DIALECT = DIALECT_HEADER.lower().encode()
HOST = b"host"
READ = frozenset({AUTHORIZATION, CONTENT_TYPE, IDEMPOTENCY_KEY, FAULT, DIALECT, HOST})
READ_HEADERS = "mockserver.read_headers"  # scope key: those headers, as the edge found them
JSON_TYPE = (b"content-type", b"application/json")
REPLAYED = ((b"idempotency-replayed", b"true"),)
VIDEO_PATH = "/v1/midjourney/generations/video"
IMAGINE_PATHS = ("/v1/midjourney/generations", "/v1/midjourney/generations/imagine")
UNIFIED_POLL = "/v1/tasks/"
MJ_POLL = "/v1/midjourney/"
SUBMITTED = (b'{"code":200,"data":[{"status":"submitted","task_id":', b"}]}")  # the id (JSON) between
BALANCE_PATHS = ("/v1/balance", "/balance", "/v1/user/balance", "/user/balance")
TASK_ID = "{task_id}"  # the path parameter that ends a poll route
SHORT_BODY = 200  # bytes: within ``service.shortened``'s limit for one string


class LinkCache:
    """Result links for a request's own scheme and host (or ``--public-url``), made once per base."""

    def __init__(self, public_url: str | None) -> None:
        self.public_url = public_url
        self._links: dict[str, Links] = {}

    def __call__(self, scope: Scope, host: str | None) -> Links:
        key = self.public_url or f"{scope['scheme']}://{host or ''}{scope.get('root_path', '')}"
        links = self._links.get(key)
        if links is None:
            base = self.public_url or str(Request(scope).base_url)
            links = self._links[key] = Links(base.rstrip("/"))
            if len(self._links) > 1000:  # many Host headers: keep the cache bounded
                self._links.clear()
        return links


def read_headers(scope: Scope) -> dict[bytes, str]:
    """The request headers the provider routes read, in one pass (the first of each, as Starlette's);
    found already by the edge's pass over them (``READ_HEADERS``) when it saw the request."""
    seen: dict[bytes, str] | None = scope.get(READ_HEADERS)
    if seen is not None:
        return seen
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in READ and name not in found:
            found[name] = value.decode("latin-1")
    return found


def scope_facts(scope: Scope) -> Facts:
    """What this request's journal entry will say (the edge made the mapping; routes add to it)."""
    state = scope.get("state")
    found: Facts | None = state.get(JOURNAL_FACTS) if state is not None else None
    if found is None:  # not through the edge (a test calling a route): a mapping of its own
        found = scope.setdefault("state", {}).setdefault(JOURNAL_FACTS, {})
    return found


async def read_json_body(content_type: str | None, receive: Receive) -> tuple[dict[str, Any], int]:
    """The body as a JSON object and its size in bytes, or the provider's 400/415."""
    if content_type is not None:
        kind = content_type.split(";", 1)[0].strip().lower()
        if kind not in JSON_TYPES and not kind.endswith("+json"):
            raise ApiError(415, f"Content-Type must be application/json (got {kind or 'empty'})", param=None)
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return json_object(raw), len(raw)


async def answer(send: Send, status: int, content: bytes, extra: Any = ()) -> None:
    """A JSON answer: the status line and headers, then the body, as two ASGI messages."""
    headers = [(b"content-length", b"%d" % len(content)), JSON_TYPE, *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


async def refuse(send: Send, exc: ApiError, facts: Facts) -> None:
    body = exc.body(field_only=True)
    facts["error"] = body["error"]  # the journal says why a request was refused
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items()] if exc.headers else ()
    await answer(send, exc.status, dumps(body), extra)


class ProviderRoutes:
    """The provider's routes over one ``Fake``. One table (``table``) names the hot routes: Starlette's
    routes are made from it (``routes``), and the edge looks them up in it without the router (``find``)."""

    def __init__(self, fake: Fake) -> None:
        self.fake = fake
        self.files = Files(fake)
        self.settings = fake.settings
        self.links = LinkCache(fake.settings.public_url)
        self.submit_video = self._submission("video")
        self.submit_imagine = self._submission("imagine")
        self.table: list[tuple[str, str, ASGIHandler]] = [  # (method, path, handler); ``{task_id}`` ends a path
            ("POST", VIDEO_PATH, self.submit_video),
            *(("POST", path, self.submit_imagine) for path in IMAGINE_PATHS),
            ("GET", UNIFIED_POLL + TASK_ID, self.get_task),
            ("GET", MJ_POLL + TASK_ID, self.get_mj_task),
        ]
        self._exact = {(m, path): h for m, path, h in self.table if not path.endswith(TASK_ID)}
        self._prefixed = [(m, path.removesuffix(TASK_ID), h) for m, path, h in self.table if path.endswith(TASK_ID)]

    def find(self, method: str, path: str) -> tuple[ASGIHandler, str | None] | None:
        """The hot route for this method and path, and its ``task_id``; None leaves it to the router
        (which then answers exactly as these would, or with its 404/405)."""
        handler = self._exact.get((method, path))
        if handler is not None:
            return handler, None
        for wanted, prefix, found in self._prefixed:
            if method == wanted and path.startswith(prefix):
                task_id = path[len(prefix) :]
                return (found, task_id) if task_id and "/" not in task_id else None
        return None

    # -- submissions ----------------------------------------------------------------------

    def _submission(self, endpoint: str) -> ASGIHandler:
        fake = self.fake

        async def submit(scope: Scope, receive: Receive, send: Send) -> None:
            facts = scope_facts(scope)
            facts["endpoint"] = endpoint
            try:
                headers = read_headers(scope)
                authorization = headers.get(AUTHORIZATION)
                if fake.counts_requests:
                    account = await fake.authorize(authorization, facts)
                else:
                    account = fake.account(authorization, facts)
                body, size = await read_json_body(headers.get(CONTENT_TYPE), receive)
                # No string of a body this small is long enough for ``shortened`` to cut (nothing changes it).
                facts["body"] = body if size <= SHORT_BODY else shortened(body)
                accepted = await fake.submit(
                    endpoint,
                    account,
                    body,
                    key=headers.get(IDEMPOTENCY_KEY),
                    fault_header=headers.get(FAULT),
                    facts=facts,
                )
            except ApiError as exc:
                await refuse(send, exc, facts)
                return
            content = SUBMITTED[0] + dumps(accepted.task_id) + SUBMITTED[1]  # made once, but for the id
            await answer(send, 200, content, REPLAYED if accepted.replayed else ())

        return submit

    # -- polls ----------------------------------------------------------------------------

    async def get_task(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /v1/tasks/{task_id}``: in the dialect the request, the account or the server chose."""
        headers = read_headers(scope)
        try:
            dialect = self.fake.dialect_for(headers.get(AUTHORIZATION), headers.get(DIALECT))
        except ApiError as exc:
            await refuse(send, exc, scope_facts(scope))
            return
        await self._poll(scope, send, headers, dialect)

    async def get_mj_task(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /v1/midjourney/{task_id}``: always the Midjourney-style body."""
        await self._poll(scope, send, read_headers(scope), "mj")

    async def _poll(self, scope: Scope, send: Send, headers: dict[bytes, str], dialect: str) -> None:
        fake, settings = self.fake, self.settings
        facts = scope_facts(scope)
        facts["endpoint"] = "poll"
        try:
            authorization = headers.get(AUTHORIZATION)
            if fake.counts_requests:
                account = await fake.authorize(authorization, facts)
            else:
                account = fake.account(authorization, facts)
            polled = await fake.poll(
                account, scope["path_params"]["task_id"], fault_header=headers.get(FAULT), facts=facts
            )
        except ApiError as exc:
            await refuse(send, exc, facts)
            return
        links = self.links(scope, headers.get(HOST))
        if dialect == "unified":
            body = dialects.unified_task(
                polled.record,
                polled.view,
                links,
                url_shape=settings.unified_url_shape,
                media_expires_at=self.files.media_expires_at(polled.record, polled.view),
                video_items=settings.unified_video_items,
                usd_per_credit=settings.usd_per_credit,
            )
        else:
            body = dialects.mj_task(polled.record, polled.view, links, usd_per_credit=settings.usd_per_credit)
        await answer(send, 200, dumps(body))

    # -- uploads (multipart: a Starlette endpoint) -----------------------------------------

    async def upload_image(self, request: Request) -> Response:
        fake = self.fake
        facts = facts_of(request)
        facts["endpoint"] = "upload"
        account = await fake.authorize(request.headers.get("authorization"), facts)
        if media_type(request) != "multipart/form-data":
            raise ApiError(415, "Content-Type must be multipart/form-data with a 'file' part", param="file")
        async with request.form(max_files=1, max_fields=16) as form:
            part = form.get("file")
            if not isinstance(part, UploadFile):
                raise bad_request("Missing File Field: send the image as the multipart part 'file'", "file")
            content_type = (part.content_type or "").split(";")[0].strip().lower()
            data = await part.read()
            filename = safe_filename(part.filename, content_type)
        upload = await self.files.upload(
            account, filename, content_type, data, fault_header=request.headers.get(FAULT_HEADER), facts=facts
        )
        links = self.links(request.scope, request.headers.get("host"))
        return JSONResponse(
            {
                "url": links.upload(upload.id, upload.filename),
                "filename": upload.filename,
                "content_type": upload.content_type,
                "bytes": upload.size,
                "created_at": int(upload.created_at),
            }
        )

    async def balance(self, request: Request) -> Response:
        """The key's (``/v1/balance``) or the account's (``/v1/user/balance``) balance: the same unless
        the key shares its account (``--shared-accounts``), when the key's ``used_balance`` is its own."""
        fake = self.fake
        facts = facts_of(request)
        header = request.headers.get("authorization")
        try:
            account = await fake.authorize(header, facts)
        except ApiError as exc:
            if exc.status == 401 and bearer_token(header) is not None:
                return JSONResponse(ledger.UNKNOWN_KEY)  # a key that is not known: a 200, as the page shows
            raise
        remaining, spent = await fake.balance(account)
        key = facts.get("key_id")
        if key is not None and not request.url.path.endswith("/user/balance"):
            spent = await fake.key_spent(account, key)
        settings = fake.settings
        per_unit = settings.usd_per_credit if settings.balance_unit == "usd" else 1.0
        return JSONResponse(ledger.balance_answer(remaining, spent, per_unit))

    def routes(self) -> list[BaseRoute]:
        """Starlette's routes: the table's, then the upload and balance routes (which the edge leaves
        to the router)."""
        return [
            *(Route(path, _Endpoint(handler), methods=[method]) for method, path, handler in self.table),
            Route("/v1/uploads/images", self.upload_image, methods=["POST"]),
            *(Route(path, self.balance, methods=["GET"]) for path in BALANCE_PATHS),
        ]


class _Endpoint:
    """A plain ASGI callable as a Starlette route endpoint (an instance, so the router does not wrap it)."""

    def __init__(self, handler: ASGIHandler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)
