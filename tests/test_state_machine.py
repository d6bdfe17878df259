"""A hypothesis state machine over the fake: any interleaving keeps the documented invariants.

Valid and invalid submissions, imagine tasks and their reuse, polls by the owner
and by another account, and clock moves. Invariants: a refusal never creates a
task; task ids are unique; status and progress only move forward; a finished
video has exactly its effective batch_size URLs; another account never sees a
task; every accepted task finishes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from mockserver import Settings, VirtualClock, create_app
from mockserver.testing.transport import SyncASGITransport

from .conftest import SPEC
from .helpers import blocking

TASK_SECONDS = 10.0
ACCOUNTS = ("alice", "bob")
RANK = {"SUBMITTED": 0, "IN_PROGRESS": 1, "SUCCESS": 2, "FAILURE": 2}
INVALID = [
    {"prompt": "p"},
    {"prompt": "p", "image_urls": ["https://e.x/a.png"], "task_id": "task_x"},
    {"prompt": "p", "image_urls": ["https://e.x/a.png"], "video_type": "vid_1.1_i2v_extend_480"},
    {"prompt": "p", "image_urls": ["https://e.x/a.png"], "batch_size": 3},
    {"prompt": "p", "image_urls": ["https://e.x/a.png"], "motion": "wild"},
    {"image_urls": ["https://e.x/a.png"]},
    {"task_id": "task_x", "index": 9},
    {"prompt": "p", "image_urls": ["https://e.x/a.png"], "animate_mode": "auto"},
]


@dataclass
class Task:
    id: str
    owner: str
    kind: str
    batch: int
    rank: int = 0
    progress: int = 0


def auth(account: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {account}"}


class FakeMachine(RuleBasedStateMachine):
    tasks = Bundle("tasks")
    parents = Bundle("parents")

    def __init__(self) -> None:
        super().__init__()
        self.clock = VirtualClock()
        self.app = create_app(Settings(task_seconds=TASK_SECONDS), clock=self.clock, spec=SPEC)
        self.client = httpx.Client(transport=SyncASGITransport(self.app), base_url="http://fake")
        self.known: dict[str, Task] = {}

    def stored(self) -> int:
        return len(blocking(self.app.state.fake.store).tasks())

    @rule(target=tasks, batch=st.sampled_from([1, 2, 4]), tier=st.sampled_from(["480", "720"]),
          end=st.booleans(), owner=st.sampled_from(ACCOUNTS))  # fmt: skip
    def submit(self, batch: int, tier: str, end: bool, owner: str) -> Task:
        body: dict[str, Any] = {"prompt": "p", "image_urls": ["https://e.x/a.png"], "batch_size": batch,
                                "video_type": f"vid_1.1_i2v_{tier}"}  # fmt: skip
        if end:
            body["end_url"] = "https://e.x/b.png"
        response = self.client.post("/v1/midjourney/generations/video", json=body, headers=auth(owner))
        assert response.status_code == 200, response.text
        task = Task(response.json()["data"][0]["task_id"], owner, "video", batch)
        assert task.id not in self.known, "task ids are unique"
        self.known[task.id] = task
        return task

    @rule(body=st.sampled_from(INVALID), owner=st.sampled_from(ACCOUNTS))
    def refused(self, body: dict[str, Any], owner: str) -> None:
        before = self.stored()
        response = self.client.post("/v1/midjourney/generations/video", json=body, headers=auth(owner))
        assert response.status_code == 400, response.text
        assert set(response.json()) == {"error"}
        assert self.stored() == before, "a refusal never creates a task"

    @rule(target=parents, owner=st.sampled_from(ACCOUNTS))
    def imagine(self, owner: str) -> Task:
        response = self.client.post("/v1/midjourney/generations", json={"prompt": "a fox"}, headers=auth(owner))
        assert response.status_code == 200
        task = Task(response.json()["data"][0]["task_id"], owner, "imagine", 4)
        self.known[task.id] = task
        return task

    @rule(target=tasks, parent=parents, index=st.integers(0, 3), owner=st.sampled_from(ACCOUNTS))
    def reuse(self, parent: Task, index: int, owner: str) -> Task:
        before = self.stored()
        response = self.client.post(
            "/v1/midjourney/generations/video", json={"task_id": parent.id, "index": index}, headers=auth(owner)
        )
        finished = self.clock.now() >= blocking(self.app.state.fake.store).get_task(parent.id).created_at + TASK_SECONDS
        if owner == parent.owner and finished:
            assert response.status_code == 200, response.text
            task = Task(response.json()["data"][0]["task_id"], owner, "video", 1)
            self.known[task.id] = task
            return task
        assert response.status_code == 400, response.text
        assert self.stored() == before
        return parent  # nothing new: the bundle gets the parent back

    @rule(task=tasks, by_owner=st.booleans())
    def poll(self, task: Task, by_owner: bool) -> None:
        viewer = task.owner if by_owner else next(a for a in ACCOUNTS if a != task.owner)
        response = self.client.get(f"/v1/midjourney/{task.id}", headers=auth(viewer))
        if not by_owner:
            assert response.status_code == 403, "an account never sees another's task"
            return
        body = response.json()
        rank, progress = RANK[body["status"]], int(body["progress"].rstrip("%"))
        assert rank >= task.rank and progress >= task.progress, "status and progress only move forward"
        task.rank, task.progress = rank, progress
        if body["status"] == "SUCCESS" and task.kind == "video":
            assert len(body["video_urls"]) == task.batch
            assert body["video_url"] == body["video_urls"][0]

    @rule(seconds=st.floats(min_value=0.1, max_value=6))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule(parent=consumes(parents))
    def forget_parent(self, parent: Task) -> None:
        """Keeps the bundle small; the task itself stays in the fake."""

    @invariant()
    def every_accepted_task_is_stored(self) -> None:
        assert self.stored() == len(self.known)

    def teardown(self) -> None:
        self.clock.advance(TASK_SECONDS + 1)
        for task in self.known.values():
            body = self.client.get(f"/v1/midjourney/{task.id}", headers=auth(task.owner)).json()
            assert body["status"] == "SUCCESS", "every accepted task finishes"
            if task.kind == "video":
                assert len(body["video_urls"]) == task.batch
        self.client.close()


FakeMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)
)
TestFakeMachine = FakeMachine.TestCase
