"""The baseline: bare Starlette answering the same two paths with fixed JSON, no validation, no state."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SUBMITTED = {"code": 200, "data": [{"status": "submitted", "task_id": "task_01KV52C0TEJSYZMCG0NCS4YWKK"}]}
TASK = {
    "id": "task_01KV52C0TEJSYZMCG0NCS4YWKK",
    "action": "VIDEO",
    "mode": "FAST",
    "status": "SUCCESS",
    "progress": "100%",
    "prompt": "a cat",
    "fail_reason": "",
    "submit_time": 1767225600000,
    "start_time": 1767225601000,
    "finish_time": 1767225608000,
    "video_url": "http://127.0.0.1:8000/media/task_01KV52C0TEJSYZMCG0NCS4YWKK/0.mp4",
    "video_urls": [
        "http://127.0.0.1:8000/media/task_01KV52C0TEJSYZMCG0NCS4YWKK/0.mp4",
        "http://127.0.0.1:8000/media/task_01KV52C0TEJSYZMCG0NCS4YWKK/1.mp4",
    ],
}


async def submit(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse(SUBMITTED)


async def poll(request: Request) -> JSONResponse:
    return JSONResponse(TASK)


app = Starlette(
    routes=[
        Route("/v1/midjourney/generations/video", submit, methods=["POST"]),
        Route("/v1/tasks/{task_id}", poll, methods=["GET"]),
    ]
)
