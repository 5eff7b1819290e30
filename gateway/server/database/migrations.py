"""Which migrations a database still needs, and whether this gateway can work with it.

A small ``schema_migrations`` table (area, version, readers_from) is all the bookkeeping the
rules in ``schema`` need: migrations only ever go forward, each one is a few DDL statements
applied in one transaction with its row, and compatibility is one comparison per area. A
general migration tool would add a dependency and a second schema language without adding a
check these rules need.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from gateway.server.database.base import Engine
from gateway.server.database.schema import (
    AREAS,
    KNOWN,
    MIGRATIONS,
    MIGRATIONS_TABLE_SQL,
    NEEDS,
    Migration,
)

__all__ = ["MIGRATIONS_TABLE_SQL", "AreaState", "pending", "problem", "states"]

#: Reads each area's newest recorded migration.
STATE_SQL = (
    "SELECT area, version, readers_from FROM schema_migrations m"
    " WHERE version = (SELECT MAX(version) FROM schema_migrations n WHERE n.area = m.area)"
)
RECORD_SQL = (
    "INSERT INTO schema_migrations (area, version, readers_from, description, applied)"
    " VALUES (?, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class AreaState:
    """Where one area's schema stands: its newest migration (0: none) and that one's rule."""

    area: str
    version: int = 0
    readers_from: int = 1


def states(rows: list[tuple[object, ...]], areas: tuple[str, ...] = AREAS) -> dict[str, AreaState]:
    """``STATE_SQL``'s rows as one state per area (areas without rows at version 0)."""
    found = {str(r[0]): AreaState(str(r[0]), int(r[1]), int(r[2])) for r in rows}  # type: ignore[call-overload]
    return {area: found.get(area, AreaState(area)) for area in areas}


def pending(state: AreaState) -> list[Migration]:
    """The migrations of the area newer than the database's, oldest first."""
    return sorted(
        (m for m in MIGRATIONS if m.area == state.area and m.version > state.version),
        key=lambda m: m.version,
    )


def record_args(migration: Migration) -> tuple[object, ...]:
    applied = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return (
        migration.area,
        migration.version,
        migration.readers_from,
        migration.description,
        applied,
    )


def problem(state: AreaState, engine: Engine) -> str | None:
    """Why this gateway cannot work with the area as it stands, or ``None`` if it can."""
    if state.version < NEEDS[state.area]:
        return (
            f"the {engine} database's {state.area} schema is at version {state.version}, this "
            f"gateway needs version {NEEDS[state.area]}: run 'cloudapi-gateway db upgrade'"
        )
    if state.readers_from > KNOWN[state.area]:
        return (
            f"the {engine} database's {state.area} schema is at version {state.version}, which "
            f"gateways that know only version {KNOWN[state.area]} cannot use: upgrade this gateway"
        )
    return None
