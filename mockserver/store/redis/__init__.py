"""The Redis store: ``RedisStore``, the ``Store`` protocol over an asyncio client (``client``).

``scripts`` holds its Lua scripts; ``link`` what its calls go through (one client per event loop, the
guard) and what it keeps between them (the copy of the shared settings, the journal queue). The modules
import one way only: ``store`` → ``link`` → ``client``, ``scripts``.
"""

from .client import Client, Options, ReplyError, Subscriber
from .store import RedisStore

__all__ = ["Client", "Options", "RedisStore", "ReplyError", "Subscriber"]
