"""What every route needs, built once per app: settings, spec, clock, store, prices."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from starlette.requests import Request
from ulid import ULID

from . import rules
from .clock import Clock
from .ledger import load_prices
from .media import Links
from .settings import Settings
from .spec import Spec
from .store import Store


@dataclass
class Context:
    settings: Settings
    spec: Spec
    clock: Clock
    store: Store
    prices: dict[str, float] = field(init=False)  # the price table the settings name

    def __post_init__(self) -> None:
        self.prices = load_prices(self.settings.price_table, self.settings.prices)
        self.rng = random.Random(self.settings.seed)
        self._links: dict[str, Links] = {}
        self._next_sweep = 0.0
        self.batch_sizes = tuple(self.spec.enum("VideoRequest", "batch_size"))
        self.video_defaults = {
            name: self.spec.default("VideoRequest", name) for name in ("video_type", "motion", "animate_mode")
        }
        self.relax = ("batch_size",) if self.settings.batch_size_policy == rules.COERCE else ()
        # Compile the validators now, not on the first request.
        self.spec.validator("VideoRequest", relax=self.relax)
        self.spec.validator("ImagineRequest")

    def links(self, request: Request) -> Links:
        """Result links for this request's own scheme and host (or ``--public-url``), made once per base."""
        if self.settings.public_url:
            key = self.settings.public_url
        else:
            scope = request.scope
            key = f"{scope['scheme']}://{request.headers.get('host', '')}{scope.get('root_path', '')}"
        links = self._links.get(key)
        if links is None:
            base = self.settings.public_url or str(request.base_url)
            links = self._links[key] = Links(base.rstrip("/"))
            if len(self._links) > 1000:  # many Host headers: keep the cache bounded
                self._links.clear()
        return links

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{ULID.from_timestamp(self.clock.now())}"

    def sweep(self) -> None:
        """Evict tasks nobody can see any more (past retention and past their media's expiry),
        at most once a minute of the clock: memory stays flat however long the server runs."""
        now = self.clock.now()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 60.0
        s = self.settings
        keep = max(s.task_retention_seconds, s.task_seconds + s.media_ttl_seconds)
        self.store.evict_tasks(now - keep)

    def balance(self, account: str) -> float | None:
        return self.store.balances().get(account, self.settings.default_balance)
