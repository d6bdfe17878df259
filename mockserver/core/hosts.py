"""Host and origin names: which ones are this machine's, and what a request names.

Used by the control plane's guard against other web pages and DNS rebinding
(``web/origin.py``; the rule and its reasons: ``docs/security.md``).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """``127.0.0.0/8``, ``::1``, ``localhost`` and any ``*.localhost`` name (RFC 6761)."""
    name = host.strip("[]").lower().rstrip(".")
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name in LOOPBACK_NAMES or name.endswith(".localhost")


def host_name(value: str) -> str:
    """The name in a ``Host`` header value, without its port: ``[::1]:8000`` → ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rpartition(":")[0] if value.count(":") == 1 else value


def origin_netloc(origin: str) -> str | None:
    """``host:port`` of an ``Origin`` header, default port dropped; None for ``null`` or garbage."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = 80 if parts.scheme == "http" else 443
    return name if port in (None, default) else f"{name}:{port}"


def netloc(host_header: str, scheme: str) -> str:
    """A ``Host`` header value as :func:`origin_netloc` spells it."""
    found = origin_netloc(f"{scheme}://{host_header.strip()}")
    return found if found is not None else host_header.strip().lower()
