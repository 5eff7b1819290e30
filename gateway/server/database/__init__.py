"""The gateway's own database layer: accounts, keys, the export journal and image records.

One engine-neutral interface (``Database``) over SQLite (embedded, the default) and PostgreSQL
(shared by several instances), one schema with versioned migrations for both (``schema``).
"""

from gateway.server.database.base import Database, Engine, Queries, Row
from gateway.server.database.errors import (
    DatabaseError,
    DatabaseUnavailable,
    IntegrityError,
    SchemaMismatch,
)
from gateway.server.database.opening import DatabaseOptions, Databases, sqlite_path

__all__ = [
    "Database",
    "DatabaseError",
    "DatabaseOptions",
    "DatabaseUnavailable",
    "Databases",
    "Engine",
    "IntegrityError",
    "Queries",
    "Row",
    "SchemaMismatch",
    "sqlite_path",
]
