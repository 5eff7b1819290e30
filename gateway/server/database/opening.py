"""Which database each store of the gateway uses, from ``[database]`` in the settings.

Without ``url``, every area keeps its SQLite file under ``data_dir`` (``accounts.sqlite``,
``journal.sqlite``, ``records.sqlite``), migrated when opened. With a ``postgresql://`` url,
every area shares one pool on that database, whose schema ``cloudapi-gateway db upgrade``
migrates: an instance only checks it, and refuses to start on a schema it cannot work with.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from gateway.server.database.base import Database, Engine
from gateway.server.database.postgres import PoolOptions, PostgresDatabase
from gateway.server.database.schema import AREAS
from gateway.server.database.sqlite import SQLiteDatabase
from gateway.settings import Settings

#: Seconds between two checks of the account change counter, per engine, unless
#: ``[database] refresh_interval`` says otherwise. SQLite is local and cheap to ask on every
#: request; PostgreSQL is asked at most once a second per instance.
REFRESH_DEFAULTS: dict[Engine, float] = {"sqlite": 0.0, "postgresql": 1.0}


@dataclass(frozen=True)
class DatabaseOptions:
    """``[database]``, typed; ``url`` ``None`` means the embedded SQLite files."""

    url: str | None = None
    pool_size: int = 10
    statement_timeout: float = 5.0
    connect_timeout: float = 5.0
    refresh_interval: float | None = None

    @classmethod
    def of(cls, settings: Settings) -> DatabaseOptions:
        section = dict(settings.database)
        url = section.get("url") or None
        return cls(
            url=str(url) if url else None,
            pool_size=int(section.get("pool_size", cls.pool_size)),
            statement_timeout=float(section.get("statement_timeout", cls.statement_timeout)),
            connect_timeout=float(section.get("connect_timeout", cls.connect_timeout)),
            refresh_interval=(
                float(section["refresh_interval"]) if "refresh_interval" in section else None
            ),
        )

    @property
    def engine(self) -> Engine:
        return "sqlite" if self.url is None else "postgresql"

    def refresh(self) -> float:
        """Seconds an account/key change made elsewhere may take to be seen here."""
        if self.refresh_interval is not None:
            return self.refresh_interval
        return REFRESH_DEFAULTS[self.engine]

    def pool(self) -> PoolOptions:
        assert self.url is not None
        return PoolOptions(
            url=self.url,
            pool_size=self.pool_size,
            statement_timeout=self.statement_timeout,
            connect_timeout=self.connect_timeout,
        )


def sqlite_path(settings: Settings, area: str) -> Path:
    """The SQLite file of ``area`` under ``data_dir`` (where the stores always kept it)."""
    return settings.data_dir / f"{area}.sqlite"


class Databases:
    """The database of each area: one shared PostgreSQL pool, or a SQLite file per area."""

    def __init__(self, options: DatabaseOptions, by_area: dict[str, Database]) -> None:
        self.options = options
        self._by_area = by_area

    @classmethod
    async def open(cls, settings: Settings, areas: tuple[str, ...] = AREAS) -> Databases:
        """Open (SQLite: create and migrate; PostgreSQL: connect and verify) ``areas``."""
        options = DatabaseOptions.of(settings)
        if options.url is None:
            by_area: dict[str, Database] = {}
            try:
                for area in areas:
                    by_area[area] = await asyncio.to_thread(
                        SQLiteDatabase.open, sqlite_path(settings, area), (area,)
                    )
            except BaseException:
                for db in by_area.values():
                    await db.close()
                raise
            return cls(options, by_area)
        pg = await PostgresDatabase.connect(options.pool())
        try:
            await pg.verify(areas)
        except BaseException:
            await pg.close()
            raise
        return cls(options, dict.fromkeys(areas, pg))

    @property
    def engine(self) -> Engine:
        return self.options.engine

    def __getitem__(self, area: str) -> Database:
        return self._by_area[area]

    def distinct(self) -> list[Database]:
        """Each database once (PostgreSQL serves every area from one pool)."""
        seen: dict[int, Database] = {}
        for db in self._by_area.values():
            seen.setdefault(id(db), db)
        return list(seen.values())

    async def check(self) -> None:
        """A trivial query on each database (readiness)."""
        for db in self.distinct():
            await db.check()

    async def close(self) -> None:
        for db in self.distinct():
            await db.close()
