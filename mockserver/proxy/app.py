"""The proxy as a Starlette app: forward, check both ways, cap the spend, record.

Every request goes to the upstream with the client's own headers (its
``Authorization`` included) and the answer comes back unchanged, unless
``--strict`` replaces a divergent one by a 502. Requests for the spec's
operations are read whole, checked (``checks.Contract``) and recorded, and so
are their answers, incrementally and decoded, up to ``--max-answer-bytes``
(a longer one, or a gzip bomb, is a 502 bad_gateway); any other path (result
files, pages the spec does not describe) is streamed through untouched. The
proxy's own routes: ``GET /__mock__/divergences``, ``GET /__mock__/spend``,
``GET /__mock__/health`` and the spec it checks with at ``/openapi.yaml`` and
``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import sys
import time
import traceback
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Scope

from ..core.accounts import bearer_token
from ..core.errors import BAD_GATEWAY, INVALID_REQUEST, NOT_FOUND, PAYMENT_REQUIRED, error_body
from ..core.jsonio import dumps
from ..core.ledger import load_prices
from ..core.replay import PollReading, read_poll
from ..core.spec import Spec
from .budget import SpendCap
from .checks import Contract, Finding, Operation, RequestVerdict, TaskBook, parsed
from .config import ProxyConfig
from .divergences import DivergenceLog
from .paths import PathRules
from .recorder import Recorder, Redactor

__all__ = ["Proxy", "create_proxy_app"]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
NOT_FORWARDED = HOP_BY_HOP | {b"host", b"content-length"}
MEDIA_CHUNK = 1024 * 1024  # a gzip-encoded result file is decoded at most this much at a time
MEDIA_TYPES = {
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/quicktime": ".mov",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
}


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _json(body: Any, status: int) -> Response:
    return Response(dumps(body), status, media_type="application/json")


def _task_id_of(body: Any) -> str | None:
    """The task id of a submission's answer: ``{"code": 200, "data": [{"task_id": …}]}``."""
    data = body.get("data") if isinstance(body, dict) else None
    first = data[0] if isinstance(data, list) and data else data
    task_id = first.get("task_id") if isinstance(first, dict) else None
    return task_id if isinstance(task_id, str) and task_id else None


class Exchange:
    """One request through the proxy: what the checks and the recorder need to know of it."""

    def __init__(
        self,
        request: Request,
        op: Operation,
        params: dict[str, str],
        raw: bytes,
        *,
        method: str,
        path: str,
        redactor: Redactor,
    ) -> None:
        self.method = method
        self.path = path  # exactly the path forwarded
        self.op = op
        self.task_id: str | None = params.get("task_id")
        self.raw = raw
        self.started = time.time()
        self.secret = bearer_token(request.headers.get("authorization"))
        self.redactor = redactor

    def scrub(self, text: str) -> str:
        """``text`` without any API key the proxy has seen (see :class:`Redactor`)."""
        return self.redactor.text(text)


class Proxy:
    """The proxy's state: the upstream client, the checks, the cap, the divergences, the recorder."""

    def __init__(
        self,
        config: ProxyConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        media_transport: httpx.AsyncBaseTransport | None = None,
        emit: Callable[[str], None] | None = None,
        spec: Spec | None = None,
    ) -> None:
        self.config = config.validated()
        self.redactor = Redactor()
        raw_emit = emit or _stderr
        self.emit: Callable[[str], None] = lambda line: raw_emit(self.redactor.text(line))
        self.contract = Contract(spec)
        self.paths = PathRules(op.template for op in self.contract.operations)
        prices = load_prices(config.price_table, config.prices)
        self.cap = SpendCap(config.max_paid_tasks, prices, config.usd_per_credit)
        self.divergences = DivergenceLog(self.emit)
        self.book = TaskBook()
        self.upstream = config.upstream.rstrip("/")
        self.recorder = (
            Recorder(config.record, upstream=self.upstream, media=config.record_media, redactor=self.redactor)
            if config.record
            else None
        )
        if self.recorder is not None:
            self.recorder.on_error = self.emit
        timeout = httpx.Timeout(config.timeout, connect=min(10.0, config.timeout))
        limits = httpx.Limits(
            max_connections=config.max_connections, max_keepalive_connections=min(32, config.max_connections)
        )
        self.client = httpx.AsyncClient(transport=transport, timeout=timeout, limits=limits)
        self.media_client = httpx.AsyncClient(
            transport=media_transport, timeout=timeout, limits=httpx.Limits(max_connections=8), follow_redirects=True
        )
        self._background: set[asyncio.Task[None]] = set()

    # -- forwarding -------------------------------------------------------------------------

    @staticmethod
    def _raw_path(scope: Scope) -> str:
        """The path as the client sent it (undecoded, without the query)."""
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        return raw_path.decode("latin-1")

    def _url(self, scope: Scope) -> str:
        query: bytes = scope.get("query_string") or b""
        return self.upstream + self._raw_path(scope) + ("?" + query.decode("latin-1") if query else "")

    def _refused_path(self, request: Request) -> Response | None:
        """A 400 (nothing forwarded) for a path that is not one spelling the proxy can judge.

        The path that is checked is the path forwarded: httpx would rewrite a path with dot
        segments, so one it would rewrite is refused too (see :mod:`.paths`)."""
        path = self._raw_path(request.scope)
        problem = self.paths.problem(path)
        if problem is None:
            try:
                sent = httpx.URL("http://proxy.invalid" + path).raw_path.decode("ascii")
            except (httpx.InvalidURL, UnicodeDecodeError):
                sent = ""
            if sent != path:
                problem = "it would not be forwarded as written"
        if problem is None:
            return None
        message = self.redactor.text(
            f"mockserver proxy: path {path!r} refused, not forwarded: {problem}; "
            "use the documented path exactly as spec/openapi.yaml spells it"
        )
        self.emit(message)
        return _json(error_body(400, message, INVALID_REQUEST), 400)

    @staticmethod
    def _headers(request: Request, *, keep_encoding: bool) -> list[tuple[bytes, bytes]]:
        drop = NOT_FORWARDED if keep_encoding else NOT_FORWARDED | {b"accept-encoding"}
        return [(k, v) for k, v in request.scope["headers"] if k.lower() not in drop]

    @staticmethod
    def _answer_headers(headers: httpx.Headers, *, decoded: bool) -> list[tuple[bytes, bytes]]:
        drop = HOP_BY_HOP | ({b"content-length", b"content-encoding"} if decoded else set())
        return [(k.lower(), v) for k, v in headers.raw if k.lower() not in drop]

    async def handle(self, request: Request) -> Response:
        self.redactor.learn(bearer_token(request.headers.get("authorization")))
        refused = self._refused_path(request)
        if refused is not None:
            return refused
        method = request.method.upper()  # httpx upper-cases the method it forwards
        path = self._raw_path(request.scope)  # canonical: exactly what is forwarded
        found = self.contract.find(method, path) if method != "HEAD" else None
        if found is None:
            return await self.passthrough(request)
        op, params = found
        raw = await request.body()
        exchange = Exchange(request, op, params, raw, method=method, path=path, redactor=self.redactor)
        try:
            verdict = self.contract.check_request(op, request.headers, exchange.raw)
        except Exception:  # a fault in a check must never stop the traffic
            self._internal_error("checking a request")
            verdict = RequestVerdict()
        price_key = verdict.price_key or "unknown"
        if op.paid and not self.cap.reserve(price_key):
            return self._over_cap(exchange, verdict, price_key)
        outgoing = self.client.build_request(
            method,
            self._url(request.scope),
            headers=self._headers(request, keep_encoding=False),
            content=exchange.raw,
        )
        try:
            upstream = await self.client.send(outgoing, stream=True)
        except httpx.HTTPError as exc:
            return self._unreachable(exchange, verdict, price_key, exc)
        try:
            content = await read_bounded(upstream, self.config.max_answer_bytes)
        except (AnswerTooLarge, httpx.DecodingError, zlib.error) as exc:
            return self._unrelayable(exchange, verdict, price_key, upstream.status_code, exc)
        except httpx.HTTPError as exc:
            return self._unreachable(exchange, verdict, price_key, exc)
        finally:
            await upstream.aclose()
        return self._relay(exchange, verdict, price_key, upstream, content)

    def _relay(
        self, exchange: Exchange, verdict: RequestVerdict, price_key: str, upstream: httpx.Response, content: bytes
    ) -> Response:
        """The upstream's answer (read whole, within ``--max-answer-bytes``), checked and passed on."""
        status = upstream.status_code
        findings: list[Finding] = []
        try:
            findings = self._observe(exchange, verdict, price_key, upstream, content)
        except Exception:
            self._internal_error(f"checking the answer to {exchange.method} {exchange.path}")
        replaced = self.config.strict and any(f.in_answer for f in findings)
        for finding in (f for f in findings if not f.repeat):
            self.divergences.add(
                finding,
                method=exchange.method,
                path=exchange.path,
                status=status,
                task_id=exchange.task_id,
                replaced=replaced,
                scrub=exchange.scrub,
            )
        if replaced:
            rules = ", ".join(dict.fromkeys(f.rule for f in findings if f.in_answer))
            detail = "; ".join(f"[{f.rule}] spec: {f.expected}; seen: {f.seen}" for f in findings if f.in_answer)
            message = exchange.scrub(f"mockserver proxy --strict: the upstream's answer ({status}) diverges: {detail}")
            body = error_body(502, message, BAD_GATEWAY)
            body["error"]["rules"] = rules.split(", ")
            return _json(body, 502)
        response = Response(content, status)
        response.raw_headers = [
            *self._answer_headers(upstream.headers, decoded=True),
            (b"content-length", str(len(content)).encode()),
        ]
        return response

    async def passthrough(self, request: Request) -> Response:
        """A path the spec does not describe (result files, …): streamed through, unchecked."""
        body = await request.body()
        outgoing = self.client.build_request(
            request.method,
            self._url(request.scope),
            headers=self._headers(request, keep_encoding=True),
            content=body or None,
        )
        try:
            upstream = await self.client.send(outgoing, stream=True)
        except httpx.HTTPError as exc:
            status = 504 if isinstance(exc, httpx.TimeoutException) else 502
            message = f"mockserver proxy: {self.upstream} did not answer ({type(exc).__name__})"
            return _json(error_body(status, message, BAD_GATEWAY), status)
        response = StreamingResponse(
            upstream.aiter_raw(), upstream.status_code, background=BackgroundTask(upstream.aclose)
        )
        response.raw_headers = self._answer_headers(upstream.headers, decoded=False)
        return response

    # -- what an answer tells ---------------------------------------------------------------

    def _observe(
        self, exchange: Exchange, verdict: RequestVerdict, price_key: str, upstream: httpx.Response, content: bytes
    ) -> list[Finding]:
        op, status = exchange.op, upstream.status_code
        findings = verdict.answered(status)
        self.divergences.confirm(verdict.agreed(status))
        answer_findings, body = self.contract.check_response(
            op, status, upstream.headers.get("content-type", ""), content
        )
        findings += answer_findings
        answer = body if body is not None else content[:2000].decode("utf-8", "replace")
        if op.paid:
            self._submitted(exchange, verdict, price_key, upstream, body, answer)
        elif op.kind == "poll" and exchange.task_id is not None:
            findings += self._polled(exchange, status, body, answer)
        elif not 200 <= status < 300 and self.recorder is not None:
            self.recorder.refusal(
                method=exchange.method,
                path=exchange.path,
                endpoint=op.kind,
                body=None,
                status=status,
                answer=answer,
                source="upstream",
                secret=exchange.secret,
            )
        return findings

    def _submitted(
        self,
        exchange: Exchange,
        verdict: RequestVerdict,
        price_key: str,
        upstream: httpx.Response,
        body: Any,
        answer: Any,
    ) -> None:
        status = upstream.status_code
        task_id = _task_id_of(body) if 200 <= status < 300 else None
        if task_id is None:
            if 400 <= status < 500:
                self.cap.release()  # refused: no task was made
            else:
                self.cap.uncertain(price_key)  # a 5xx (or a 2xx without a task id): it may exist
            self._record_refusal(exchange, verdict, status, answer, "upstream")
            return
        exchange.task_id = task_id
        replayed = upstream.headers.get("idempotency-replayed", "").lower() == "true"
        watch, new = self.book.submitted(task_id, exchange.op.kind, verdict.batch_size, price_key, verdict.quantity)
        if replayed or not new:
            self.cap.release()  # the earlier task answered again: nothing new was made
        else:
            watch.charged = True
            charge = self.cap.accepted(price_key, verdict.quantity)
            self.emit(
                f"mockserver proxy: paid task {self.cap.tasks} of {self.cap.limit} accepted: {task_id} "
                f"({price_key} × {verdict.quantity} = {charge:g} credit(s)); spent so far {self.cap.spent_line()}"
            )
        if self.recorder is not None:
            self.recorder.submission(
                task_id,
                at=exchange.started,
                method=exchange.method,
                path=exchange.path,
                endpoint=exchange.op.kind,
                body=verdict.body if verdict.body is not None else parsed(exchange.raw),
                status=status,
                answer=answer,
                elapsed=time.time() - exchange.started,
                batch_size=verdict.batch_size,
                price_key=price_key,
                secret=exchange.secret,
            )

    def _polled(self, exchange: Exchange, status: int, body: Any, answer: Any) -> list[Finding]:
        task_id = exchange.task_id
        assert task_id is not None
        reading = read_poll(body) if status == 200 else None
        findings: list[Finding] = []
        first_final = False
        if reading is not None:
            findings, first_final = self.book.polled(task_id, reading)
        recorder = self.recorder
        if recorder is not None:
            if status == 200 or recorder.knows(task_id):
                recorder.poll(
                    task_id, at=time.time(), path=exchange.path, status=status, body=answer, secret=exchange.secret
                )
            else:
                recorder.refusal(
                    method=exchange.method,
                    path=exchange.path,
                    endpoint="poll",
                    body=None,
                    status=status,
                    answer=answer,
                    source="upstream",
                    secret=exchange.secret,
                )
        if first_final and reading is not None:
            self._finished(task_id, reading)
        return findings

    def _finished(self, task_id: str, reading: PollReading) -> None:
        watch = self.book.get(task_id)
        if not reading.success and watch.charged and watch.price_key:
            refunded = self.cap.refund(watch.price_key, watch.quantity)
            if refunded:
                self.emit(
                    f"mockserver proxy: task {task_id} ended {reading.status}: {refunded:g} credit(s) refunded; "
                    f"spent so far {self.cap.spent_line()}"
                )
        if self.recorder is not None:
            self.recorder.final(
                task_id, at=time.time(), status=reading.status, clips=len(reading.urls), fail_reason=reading.fail_reason
            )
            if reading.success and reading.urls:
                self._spawn(self._probe(task_id, list(reading.urls)))

    # -- result files -----------------------------------------------------------------------

    def _spawn(self, work: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _probe(self, task_id: str, urls: list[str]) -> None:
        """Size, content type and first 16 bytes of each result file (``--record-media``: the file)."""
        results = [await self._probe_one(task_id, n, url) for n, url in enumerate(urls)]
        if self.recorder is not None:
            self.recorder.results(task_id, results)

    async def _probe_one(self, task_id: str, n: int, url: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"url": url}
        if not url.lower().startswith(("http://", "https://")):
            entry["error"] = "not an http(s) URL"
            return entry
        keep = self.config.record_media and self.recorder is not None
        headers = {} if keep else {"Range": "bytes=0-15"}
        try:
            async with self.media_client.stream("GET", url, headers=headers) as answer:
                entry["status"] = answer.status_code
                entry["content_type"] = answer.headers.get("content-type")
                if keep and answer.status_code == 200 and self.recorder is not None:
                    entry.update(await self._keep_file(task_id, n, url, answer))
                else:
                    head = b""
                    async for chunk in answer.aiter_bytes():
                        head += chunk
                        if len(head) >= 16:
                            break
                    entry["size"] = _size_of(answer)
                    entry["head"] = head[:16].hex()
        except httpx.HTTPError as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
        return entry

    async def _keep_file(self, task_id: str, n: int, url: str, answer: httpx.Response) -> dict[str, Any]:
        """Write one result file under ``media/<task_id>/`` chunk by chunk, at most ``--max-media-bytes``."""
        assert self.recorder is not None
        kind = (answer.headers.get("content-type") or "").split(";")[0].strip().lower()
        suffix = MEDIA_TYPES.get(kind) or _suffix_of(self.redactor.text(httpx.URL(url).path))
        folder = self.recorder.media_dir(task_id)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{n}{suffix}"
        temp = target.with_name(f".{target.name}.tmp")
        size, head = await _write_bounded(answer, temp, self.config.max_media_bytes)
        if size > self.config.max_media_bytes:
            temp.unlink(missing_ok=True)
            return {
                "size": _size_of(answer),
                "head": head.hex(),
                "skipped": f"longer than {self.config.max_media_bytes} bytes (--max-media-bytes); not kept",
            }
        temp.replace(target)
        return {"size": size, "head": head.hex(), "file": str(target.relative_to(self.recorder.root))}

    # -- the proxy's own answers ------------------------------------------------------------

    def _over_cap(self, exchange: Exchange, verdict: RequestVerdict, price_key: str) -> Response:
        body = error_body(402, self.cap.refusal_message(price_key), PAYMENT_REQUIRED)
        for finding in verdict.findings:  # what the fake would refuse is noted, forwarded or not
            self.divergences.add(
                dataclasses.replace(finding, seen=f"{finding.seen}; not forwarded (--max-paid-tasks reached)"),
                method=exchange.method,
                path=exchange.path,
                status=402,
                task_id=None,
                replaced=False,
                scrub=exchange.scrub,
            )
        self._record_refusal(exchange, verdict, 402, body, "proxy")
        return _json(body, 402)

    def _unreachable(self, exchange: Exchange, verdict: RequestVerdict, price_key: str, exc: Exception) -> Response:
        if exchange.op.paid:
            if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
                self.cap.release()  # never sent
            else:
                self.cap.uncertain(price_key)
        status = 504 if isinstance(exc, httpx.TimeoutException) else 502
        seen = f"{type(exc).__name__}; the proxy answered {status}"
        self.divergences.add(
            Finding("upstream.unreachable", f"an answer from {self.upstream}", seen),
            method=exchange.method,
            path=exchange.path,
            status=None,
            task_id=exchange.task_id,
            replaced=False,
            scrub=exchange.scrub,
        )
        body = error_body(
            status, f"mockserver proxy: {self.upstream} did not answer ({type(exc).__name__})", BAD_GATEWAY
        )
        self._record_refusal(exchange, verdict, status, body, "proxy")
        return _json(body, status)

    def _unrelayable(
        self, exchange: Exchange, verdict: RequestVerdict, price_key: str, status: int, exc: Exception
    ) -> Response:
        """A 502 for an answer too long (decoded) to relay, or that cannot be decoded; it is not read further."""
        if exchange.op.paid:
            if 400 <= status < 500:
                self.cap.release()  # refused upstream: no task was made
            else:
                self.cap.uncertain(price_key)  # a task may exist; its id is in the answer not read
        limit = self.config.max_answer_bytes
        why = (
            f"is longer than {limit} bytes (the limit, --max-answer-bytes)"
            if isinstance(exc, AnswerTooLarge)
            else f"could not be decoded ({type(exc).__name__}; --max-answer-bytes is {limit} bytes)"
        )
        message = exchange.scrub(
            f"mockserver proxy: the upstream's answer ({status}) to {exchange.method} {exchange.path} {why}; "
            "not relayed"
        )
        self.emit(message)
        body = error_body(502, message, BAD_GATEWAY)
        self._record_refusal(exchange, verdict, 502, body, "proxy")
        return _json(body, 502)

    def _record_refusal(
        self, exchange: Exchange, verdict: RequestVerdict, status: int, answer: Any, source: str
    ) -> None:
        """A refused submission for the recording (the request body as checked, or as sent)."""
        if self.recorder is not None:
            self.recorder.refusal(
                method=exchange.method,
                path=exchange.path,
                endpoint=exchange.op.kind,
                body=verdict.body if verdict.body is not None else parsed(exchange.raw),
                status=status,
                answer=answer,
                source=source,
                secret=exchange.secret,
            )

    def _internal_error(self, doing: str) -> None:
        last = traceback.format_exc(limit=3).strip().splitlines()[-1]
        self.emit(f"mockserver proxy: internal error while {doing} (the answer passes unchanged): {last}")

    # -- lifetime ---------------------------------------------------------------------------

    async def aclose(self, timeout: float = 10.0) -> None:
        """Let the result probes finish (at most ``timeout`` seconds), then close the clients."""
        pending = set(self._background)
        if pending:
            _, late = await asyncio.wait(pending, timeout=timeout)
            for task in late:
                task.cancel()
        await self.client.aclose()
        await self.media_client.aclose()

    def report(self) -> list[str]:
        lines = [self.divergences.summary(), self.cap.report()]
        if self.recorder is not None:
            lines.append(f"mockserver proxy: recorded to {self.recorder.root} ({self.recorder.written} write(s))")
        return lines


async def _write_bounded(answer: httpx.Response, path: Path, limit: int) -> tuple[int, bytes]:
    """Write the answer's body to ``path`` in chunks; stop once past ``limit`` bytes.

    Returns the bytes seen (``limit + 1`` or more if it stopped, or declared longer) and the first 16."""
    declared = answer.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit and _encoding(answer) in ("", "identity"):
        return int(declared), b""
    size, head = 0, b""
    with open(path, "wb") as handle:
        async for chunk in _decoded(answer, MEDIA_CHUNK):
            if len(head) < 16:
                head += chunk[: 16 - len(head)]
            size += len(chunk)
            if size > limit:
                break
            handle.write(chunk)
    return size, head


class AnswerTooLarge(Exception):
    """An upstream answer whose decoded body is longer than ``--max-answer-bytes``."""


async def read_bounded(answer: httpx.Response, limit: int) -> bytes:
    """The decoded body of a streamed ``answer``, read incrementally; :class:`AnswerTooLarge` past ``limit``."""
    declared = answer.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit and _encoding(answer) in ("", "identity"):
        raise AnswerTooLarge(limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in _decoded(answer, limit):
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(limit)
        parts.append(chunk)
    return b"".join(parts)


def _encoding(answer: httpx.Response) -> str:
    """The answer's ``content-encoding``, lower-cased (``""`` if none)."""
    encoding: str = answer.headers.get("content-encoding", "")
    return encoding.strip().lower()


async def _decoded(answer: httpx.Response, most: int) -> AsyncIterator[bytes]:
    """The body decoded; gzip never more than ``most + 1`` bytes at a time (a gzip bomb stays small),
    other encodings by httpx, chunk by chunk."""
    encoding = _encoding(answer)
    if encoding in ("", "identity"):
        async for chunk in answer.aiter_raw():
            yield chunk
    elif encoding in ("gzip", "x-gzip"):
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        async for data in answer.aiter_raw():
            while data:
                yield inflater.decompress(data, most + 1)
                data = inflater.unconsumed_tail
        yield inflater.flush()
    else:
        async for chunk in answer.aiter_bytes():
            yield chunk


def _suffix_of(path: str) -> str:
    """A result file's suffix from its (already scrubbed) URL path: ``.`` and 1-7 letters or digits."""
    suffix = Path(path).suffix
    return suffix if re.fullmatch(r"\.[A-Za-z0-9]{1,7}", suffix) else ".bin"


def _size_of(answer: httpx.Response) -> int | None:
    total = answer.headers.get("content-range", "").rpartition("/")[2]
    if total.isdigit():
        return int(total)
    length = answer.headers.get("content-length", "")
    return int(length) if length.isdigit() and answer.status_code == 200 else None


FORWARDED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def create_proxy_app(
    config: ProxyConfig,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    media_transport: httpx.AsyncBaseTransport | None = None,
    emit: Callable[[str], None] | None = None,
) -> Starlette:
    """The proxy as an ASGI app; ``app.state.proxy`` is its :class:`Proxy`. ``transport`` replaces
    the network to the upstream (tests hand in an ``httpx.ASGITransport`` of a fake)."""
    app = Starlette(
        routes=[
            Route("/__mock__/divergences", _divergences, methods=["GET"]),
            Route("/__mock__/spend", _spend, methods=["GET"]),
            Route("/__mock__/health", _health, methods=["GET"]),
            Route("/openapi.yaml", _as_yaml, methods=["GET"]),
            Route("/openapi.json", _as_json, methods=["GET"]),
            Route("/{path:path}", _forward, methods=FORWARDED_METHODS),
        ],
        lifespan=_lifespan,
        exception_handlers={HTTPException: _not_routed},
    )
    app.router.redirect_slashes = False
    app.state.proxy = Proxy(config, transport=transport, media_transport=media_transport, emit=emit)
    return app


def _proxy(request: Request) -> Proxy:
    found: Proxy = request.app.state.proxy
    return found


async def _forward(request: Request) -> Response:
    return await _proxy(request).handle(request)


async def _divergences(request: Request) -> Response:
    return _json(_proxy(request).divergences.snapshot(), 200)


async def _spend(request: Request) -> Response:
    return _json(_proxy(request).cap.summary(), 200)


async def _health(request: Request) -> Response:
    proxy = _proxy(request)
    return _json({"status": "ok", "upstream": proxy.upstream, "strict": proxy.config.strict}, 200)


async def _as_yaml(request: Request) -> Response:
    return Response(_proxy(request).contract.spec.yaml_text, media_type="application/yaml")


async def _as_json(request: Request) -> Response:
    return Response(_proxy(request).contract.spec.json_bytes, media_type="application/json")


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """At shutdown: the upstream's connections closed, then the run's report."""
    yield
    proxy: Proxy = app.state.proxy
    await proxy.aclose()
    for line in proxy.report():
        proxy.emit(line)


async def _not_routed(request: Request, exc: Exception) -> Response:
    """What no route takes (another method, a request target that is not a path): refused in the
    provider's error body, as every refusal of the proxy, and not forwarded."""
    assert isinstance(exc, HTTPException)
    status, method, path = exc.status_code, request.scope["method"], request.scope["path"]
    if status == 405:
        message = f"mockserver proxy: method {method!r} is not forwarded (only {', '.join(FORWARDED_METHODS)})"
    else:
        message = f"mockserver proxy: {method!r} {path!r} refused, not forwarded: {exc.detail}"
    body = error_body(status, _proxy(request).redactor.text(message), NOT_FOUND if status == 404 else INVALID_REQUEST)
    return Response(dumps(body), status, headers=exc.headers, media_type="application/json")
