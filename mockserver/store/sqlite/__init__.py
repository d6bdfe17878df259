"""The SQLite backend: ``schema`` (tables, migration), ``steps`` (each atomic step as a function of a
connection), ``writer`` (the connection and its group-commit writer) and ``store`` (``SQLiteStore``)."""

from . import steps
from .schema import out_of_space
from .store import SQLiteStore
from .writer import SQLiteWriter

__all__ = ["SQLiteStore", "SQLiteWriter", "out_of_space", "steps"]
