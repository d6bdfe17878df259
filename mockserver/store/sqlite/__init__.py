"""The SQLite backend: ``schema`` (tables, migration), ``steps`` (each atomic step as a function of a
connection), ``hot`` (the group-commit writer of the hot path) and ``store`` (``SQLiteStore``)."""

from .hot import SQLiteHot
from .schema import out_of_space
from .store import SQLiteStore

__all__ = ["SQLiteHot", "SQLiteStore", "out_of_space"]
