"""uvicorn's access log without credentials: a ``?token=`` (or ``api_key=``…) value in a logged
request line is written as ``[redacted]``, as the journal and the HAR write it."""

from __future__ import annotations

import logging

from ..core.journal import redacted_query

ACCESS_LOGGER = "uvicorn.access"


class RedactQuery(logging.Filter):
    """Rewrites the path argument of uvicorn's access record (client, method, path, version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            path, _, query = args[2].partition("?")
            record.args = (*args[:2], f"{path}?{redacted_query(query)}", *args[3:])
        return True


def redact_access_log() -> None:
    """Installs the filter once on uvicorn's access logger (it survives uvicorn's own logging set-up)."""
    logger = logging.getLogger(ACCESS_LOGGER)
    if not any(isinstance(f, RedactQuery) for f in logger.filters):
        logger.addFilter(RedactQuery())
