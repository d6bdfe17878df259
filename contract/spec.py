"""The provider's spec as the contract suite reads it (the same file the fake loads)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def spec_path() -> Path:
    """``spec/openapi.yaml``: packaged with ``contract`` in the wheel, or in the source checkout."""
    packaged = resources.files("contract").joinpath("_spec/openapi.yaml")
    if packaged.is_file():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "spec" / "openapi.yaml"
