"""The contract suite: one spec, checked against mockserver or the live API over HTTP.

This package speaks HTTP to a base URL only; it never imports ``mockserver``.
"""

from .report import Finding, Report
from .runner import run_contract

__all__ = ["Finding", "Report", "run_contract"]
