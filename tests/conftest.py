from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mockserver import Settings, VirtualClock, create_app
from mockserver.core.spec import Spec
from mockserver.store import MemoryStore, Store
from mockserver.store.redis import RedisStore
from mockserver.store.sqlite import SQLiteStore
from mockserver.testing.control import MockControl
from mockserver.testing.transport import SyncASGITransport

from .helpers import AUTH, TOKEN, Api
from .servers import RedisUnavailable, redis_server

MakeApi = Callable[..., Api]
SPEC = Spec()  # loaded and compiled once for every test app


STORES = ["memory", "sqlite", "redis"]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, for the session (.ci/run installs it)."""
    try:
        with redis_server(tmp_path_factory.mktemp("redis")) as url:
            yield url
    except RedisUnavailable as exc:
        pytest.skip(str(exc))


MakeStore = Callable[..., Store]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The HTTP suite runs on the memory store; a test where the store matters is marked
    ``all_stores`` and runs on all three (the store conformance suite, store/test_conformance.py, is
    marked so as a whole).
    Redis runs start a real redis-server, so they count as ``e2e``."""
    if "store_kind" not in metafunc.fixturenames or "store_kind" in getattr(metafunc.module, "__dict__", {}):
        return
    wide = metafunc.definition.get_closest_marker("all_stores")
    kinds = STORES if wide else ["memory"]
    params = [pytest.param(kind, marks=pytest.mark.e2e) if kind == "redis" else kind for kind in kinds]
    metafunc.parametrize("store_kind", params)


@pytest.fixture
def make_store(store_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    """A new, empty store of the kind under test."""

    def make(journal_size: int = 10_000) -> Store:
        if store_kind == "sqlite":
            return SQLiteStore(tmp_path / f"{uuid.uuid4().hex}.db", journal_size)
        if store_kind == "redis":
            url = request.getfixturevalue("redis_url")
            return RedisStore(url, journal_size, prefix=f"t{uuid.uuid4().hex[:12]}:")
        return MemoryStore(journal_size)

    return make


@pytest.fixture
def make_api(make_store: MakeStore) -> Iterator[MakeApi]:
    made: list[Api] = []

    def make(headers: dict[str, str] | None = None, **settings: Any) -> Api:
        clock = VirtualClock()
        store = make_store(settings.get("journal_size", 10_000))
        app = create_app(Settings(**{"task_seconds": 10.0, **settings}), clock=clock, spec=SPEC, store=store)
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


@pytest.fixture
def client(apimart_mock: MockControl, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    """An httpx client of the in-process fake, with the test module's ``TOKEN``."""
    token = getattr(request.module, "TOKEN", TOKEN)
    with httpx.Client(base_url=apimart_mock.base_url, headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


REAL_PART_FIXTURES = frozenset({"apimart_server", "apimart_server_process", "redis_url"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for a real server (the fixtures above) is an ``e2e`` test, like one marked so."""
    for item in items:
        if REAL_PART_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
