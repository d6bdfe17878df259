"""``mockserver proxy``: the real API behind a checking, spend-capped, recording proxy.

Every request goes to the upstream (``--upstream``, by default the provider)
with the client's own key, and every answer comes back unchanged; on the way
both are checked against ``spec/openapi.yaml`` and each divergence is logged,
kept and counted (``GET /__mock__/divergences``). Paid submissions are capped
(``--max-paid-tasks``), tasks recorded (``--record DIR``) for
``mockserver serve --replay DIR`` and ``mockserver calibrate DIR``.

Only the command line imports this package's server parts (they need httpx).
"""

from .config import DEFAULT_UPSTREAM, ProxyConfig

__all__ = ["DEFAULT_UPSTREAM", "ProxyConfig"]
