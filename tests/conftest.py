from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from mockserver import Settings, VirtualClock, create_app
from mockserver.spec import Spec
from mockserver.transport import SyncASGITransport

from .helpers import AUTH, Api

MakeApi = Callable[..., Api]
SPEC = Spec()  # loaded and compiled once for every test app


@pytest.fixture
def make_api() -> Iterator[MakeApi]:
    made: list[Api] = []

    def make(headers: dict[str, str] | None = None, **settings: Any) -> Api:
        clock = VirtualClock()
        app = create_app(Settings(**{"task_seconds": 10.0, **settings}), clock=clock, spec=SPEC)
        client = httpx.Client(
            transport=SyncASGITransport(app),
            base_url="http://testserver",
            headers=AUTH if headers is None else headers,
        )
        api = Api(client=client, app=app, clock=clock)
        made.append(api)
        return api

    yield make
    for api in made:
        api.client.close()


@pytest.fixture
def api(make_api: MakeApi) -> Api:
    return make_api()
