"""The database layer's failures, the same whichever engine raised them.

``DatabaseUnavailable`` is a ``ServiceUnavailable``: a request that needs the database while
it is down (or too slow) answers 503 through the ordinary error middleware, never 500.
"""

from __future__ import annotations

from gateway.errors import ServiceUnavailable


class DatabaseError(Exception):
    """Base of the layer's failures; the message names what went wrong for an operator."""


class DatabaseUnavailable(DatabaseError, ServiceUnavailable):
    """The database cannot be reached, refused the connection, or a statement timed out."""

    def __init__(self, detail: str) -> None:
        ServiceUnavailable.__init__(
            self,
            "the gateway's database is unavailable; retry later",
            headers={"Retry-After": "5"},
        )
        #: What happened, for the log (never sent to a client: it may name hosts).
        self.detail = detail

    def __str__(self) -> str:
        return f"database unavailable: {self.detail}"


class IntegrityError(DatabaseError):
    """A unique, primary-key or foreign-key constraint refused the statement."""


class SchemaMismatch(DatabaseError):
    """The database's schema is one this gateway cannot work with (older than it needs, or
    contracted past what it knows); the message says which command fixes it."""
