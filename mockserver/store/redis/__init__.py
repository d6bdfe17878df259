"""The Redis store: ``RedisStore`` (sync, redis-py) and its hot path ``RedisHot`` (asyncio, ``client``).

``scripts`` holds the Lua scripts both run; ``hot`` never imports ``store`` (it knows the store as
``hot.SyncStore``), so the modules import one way only: ``store`` → ``hot`` → ``client``, ``scripts``.
"""

from .client import Client, Options, ReplyError, Subscriber
from .hot import RedisHot
from .store import RedisStore

__all__ = ["Client", "Options", "RedisHot", "RedisStore", "ReplyError", "Subscriber"]
