"""The control plane under ``/__mock__/``: the fake's own knobs, apart from the provider's API."""

from .routes import control_app

__all__ = ["control_app"]
