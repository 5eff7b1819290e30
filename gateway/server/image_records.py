"""``gateway.catalog.ImageRecords`` in the gateway's database (SQLite or PostgreSQL).

One row per image; ``files`` and ``locations`` are JSON arrays, and a side table maps each
location to the images that use it, so "is this file still used?" is an indexed lookup inside
the same transaction as the delete. Each multi-statement method is one write transaction
(``BEGIN IMMEDIATE`` on SQLite, a transaction on PostgreSQL), so processes and instances
sharing the database never interleave inside one. The schema is the ``records`` area of
``gateway.server.database.schema``.

Reads are served from memory (``RecordCache``) while the records' change stamp stays the same,
since GetImage and ListImages read far more often than anything writes: on SQLite the stamp
is ``PRAGMA data_version`` of the records file (any commit by any connection or process moves
it; seen by the very next read), on PostgreSQL the ``image_record_changes`` counter (records
schema version 2, bumped by a trigger) polled once per ``[database] refresh_interval``, the
account store's bound for changes made by other instances. This instance's own writes drop
the cache at once. Without a readable stamp every read goes to the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.catalog import (
    CatalogError,
    ImageAlreadyExists,
    ImageFile,
    ImageNotFound,
    ImageRecord,
)
from gateway.server.change_watch import (
    RECHECK_AFTER,
    ChangeWatch,
    PolledCounterWatch,
    SQLiteChangeWatch,
)
from gateway.server.database import Database, IntegrityError, Queries
from gateway.server.database.opening import DatabaseOptions
from gateway.server.database.postgres import PostgresDatabase
from gateway.server.database.sqlite import SQLiteDatabase
from gateway.settings import Settings

_SELECT = "SELECT manifest, files, locations FROM image_records"
#: The records' change counter (records schema version 2).
COUNTER_SQL = "SELECT serial FROM image_record_changes WHERE id = 1"
#: Records kept in memory before the cache starts over.
ENTRY_LIMIT = 10_000

Stamp = tuple[int, int]


class RecordCache:
    """Records by uuid, and the whole list, valid while the change stamp stays the same.

    The stamp pairs the watch's (changes by anyone) with a count of this instance's own
    writes, bumped before and after each, so a read that overlapped a write is never kept.
    """

    def __init__(self, watch: ChangeWatch, *, limit: int = ENTRY_LIMIT) -> None:
        self.watch = watch
        self.limit = limit
        self._writes = 0
        self._stamp: Stamp | None = None
        self._records: dict[str, ImageRecord | None] = {}
        self._all: list[ImageRecord] | None = None
        #: Reads answered from memory, and reads that went to the database.
        self.hits = 0
        self.misses = 0

    def stamp(self) -> Stamp | None:
        """The stamp now (clearing what an older one cached); ``None``: nothing is cached."""
        watched = self.watch.stamp()
        stamp = None if watched is None else (watched, self._writes)
        if stamp != self._stamp:
            self._records.clear()
            self._all = None
            self._stamp = stamp
        return stamp

    def get(self, uuid: str) -> tuple[bool, ImageRecord | None]:
        """(cached?, the record): a cached ``None`` means "no such image" was read."""
        if self.stamp() is not None and uuid in self._records:
            self.hits += 1
            return True, self._records[uuid]
        self.misses += 1
        return False, None

    def put(self, uuid: str, record: ImageRecord | None, stamp: Stamp | None) -> None:
        """Keep what a read started under ``stamp`` found, unless anything changed since."""
        if stamp is None or stamp != self.stamp():
            return
        if len(self._records) >= self.limit:
            self._records.clear()
        self._records[uuid] = record

    def get_all(self) -> list[ImageRecord] | None:
        """The cached list of every record (a copy the caller may change), else ``None``."""
        found = self._all if self.stamp() is not None else None
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        return list(found)

    def put_all(self, records: list[ImageRecord], stamp: Stamp | None) -> None:
        if stamp is not None and stamp == self.stamp():
            self._all = list(records)

    @contextlib.asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        """Around one of this instance's writes: drops the cache before and after it."""
        self._writes += 1
        try:
            yield
        finally:
            self._writes += 1

    def __len__(self) -> int:
        return len(self._records)


def files_to_json(files: tuple[ImageFile, ...]) -> str:
    return json.dumps(
        [
            {
                "sha1": f.sha1,
                "size": f.size,
                "compression": f.compression,
                "content_md5": f.content_md5,
                "dataset_guid": f.dataset_guid,
            }
            for f in files
        ]
    )


def record_from_row(manifest: str, files: str, locations: str) -> ImageRecord:
    return ImageRecord(
        manifest=json.loads(manifest),
        files=tuple(
            ImageFile(
                sha1=f["sha1"],
                size=f["size"],
                compression=f["compression"],
                content_md5=f["content_md5"],
                dataset_guid=f.get("dataset_guid"),
            )
            for f in json.loads(files)
        ),
        locations=tuple(json.loads(locations)),
    )


class DatabaseImageRecords:
    """The records tables of a ``Database``."""

    def __init__(self, db: Database | None = None) -> None:
        self._db = db
        #: Set while a change stamp is available (``open``); ``None``: always ask the database.
        self.cache: RecordCache | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            raise CatalogError("the image records database is not open")
        return self._db

    async def _database(self) -> Database:
        """The database to use now (subclasses that connect lazily override it)."""
        return self.db

    async def list_records(self) -> list[ImageRecord]:
        db = await self._database()
        cache = self.cache
        if cache is not None:
            cached = cache.get_all()
            if cached is not None:
                return cached
        stamp = cache.stamp() if cache is not None else None
        rows = await db.fetch(f"{_SELECT} ORDER BY rowid")
        records = [record_from_row(*row) for row in rows]
        if cache is not None:
            cache.put_all(records, stamp)
        return records

    async def get_record(self, uuid: str) -> ImageRecord | None:
        db = await self._database()
        cache = self.cache
        if cache is not None:
            cached, record = cache.get(uuid)
            if cached:
                return record
        stamp = cache.stamp() if cache is not None else None
        row = await db.fetchone(f"{_SELECT} WHERE uuid = ?", uuid)
        record = record_from_row(*row) if row else None
        if cache is not None:
            cache.put(uuid, record, stamp)
        return record

    def _writing(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.cache.writing() if self.cache is not None else contextlib.nullcontext()

    @staticmethod
    async def _insert(tx: Queries, record: ImageRecord) -> None:
        try:
            await tx.execute(
                "INSERT INTO image_records (uuid, manifest, files, locations) VALUES (?, ?, ?, ?)",
                record.uuid,
                json.dumps(dict(record.manifest)),
                files_to_json(record.files),
                json.dumps(list(record.locations)),
            )
        except IntegrityError:
            raise ImageAlreadyExists(f"image {record.uuid} already exists") from None
        for location in dict.fromkeys(record.locations):
            await tx.execute(
                "INSERT INTO image_locations (location, uuid) VALUES (?, ?)"
                " ON CONFLICT DO NOTHING",
                location,
                record.uuid,
            )

    async def insert_record(self, record: ImageRecord) -> None:
        db = await self._database()
        async with self._writing(), db.transaction() as tx:
            await self._insert(tx, record)

    async def clone_record(self, source_uuid: str, record: ImageRecord) -> None:
        db = await self._database()
        async with self._writing(), db.transaction() as tx:
            # On PostgreSQL the row lock keeps a concurrent delete of the source waiting until
            # this clone (which shares its locations) is committed.
            source = await tx.fetchone(
                f"SELECT 1 FROM image_records WHERE uuid = ?{_lock_clause(db)}", source_uuid
            )
            if source is None:
                raise ImageNotFound(f"image {source_uuid} not found")
            await self._insert(tx, record)

    async def change_manifest(
        self, uuid: str, change: Callable[[Mapping[str, Any]], Mapping[str, Any]]
    ) -> ImageRecord | None:
        db = await self._database()
        async with self._writing(), db.transaction() as tx:
            row = await tx.fetchone(f"{_SELECT} WHERE uuid = ?{_lock_clause(db)}", uuid)
            if row is None:
                return None
            stored = record_from_row(*row)
            manifest = dict(change(stored.manifest))  # raises: rolled back, nothing stored
            await tx.execute(
                "UPDATE image_records SET manifest = ? WHERE uuid = ?", json.dumps(manifest), uuid
            )
        return ImageRecord(manifest=manifest, files=stored.files, locations=stored.locations)

    async def delete_record(self, uuid: str) -> tuple[ImageRecord, frozenset[str]] | None:
        db = await self._database()
        async with self._writing(), db.transaction() as tx:
            row = await tx.fetchone(f"{_SELECT} WHERE uuid = ?{_lock_clause(db)}", uuid)
            if row is None:
                return None
            record = record_from_row(*row)
            await tx.execute("DELETE FROM image_locations WHERE uuid = ?", uuid)
            await tx.execute("DELETE FROM image_records WHERE uuid = ?", uuid)
            unused = frozenset(
                [
                    location
                    for location in record.locations
                    if await tx.fetchone(
                        "SELECT 1 FROM image_locations WHERE location = ? LIMIT 1", location
                    )
                    is None
                ]
            )
        return record, unused

    async def used_locations(self) -> frozenset[str]:
        rows = await (await self._database()).fetch(
            "SELECT DISTINCT location FROM image_locations"
        )
        return frozenset(str(row[0]) for row in rows)


def _lock_clause(db: Database) -> str:
    """Row lock for a read that decides a write (SQLite's ``BEGIN IMMEDIATE`` locks it all)."""
    return " FOR UPDATE" if db.engine == "postgresql" else ""


class SQLiteImageRecords(DatabaseImageRecords):
    """The records in a SQLite file of their own (``records.sqlite``), opened synchronously."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self._watch: SQLiteChangeWatch | None = None

    def open(self) -> None:
        self._db = SQLiteDatabase.open(self.path, ("records",))
        try:
            # Own writes move the cache's stamp themselves (``RecordCache.writing``).
            self._watch = SQLiteChangeWatch(self.path, recheck_after=RECHECK_AFTER)
        except sqlite3.Error:
            self._watch = None  # reads simply go to the database
        self.cache = RecordCache(self._watch) if self._watch is not None else None

    def close(self) -> None:
        self.cache = None
        if self._watch is not None:
            self._watch.close_now()
            self._watch = None
        if isinstance(self._db, SQLiteDatabase):
            self._db.close_now()
        self._db = None


class PostgresImageRecords(DatabaseImageRecords):
    """The records in the shared PostgreSQL database, with the same ``open``/``close`` as
    ``SQLiteImageRecords``: the pool is created on first use (inside the event loop)."""

    def __init__(self, options: DatabaseOptions) -> None:
        super().__init__()
        self.options = options
        self._opened = False
        self._poller: asyncio.Task[None] | None = None

    def open(self) -> None:
        self._opened = True

    async def _database(self) -> Database:
        if not self._opened:
            raise CatalogError("the image records database is not open")
        if self._db is None:
            pg = await PostgresDatabase.connect(self.options.pool())
            await pg.verify(("records",))
            self._db = pg
            await self._watch(pg)
        return self._db

    async def _watch(self, db: Database) -> None:
        """Start polling the records' change counter (none before schema version 2, or with
        a ``refresh_interval`` of 0: then every read asks the database)."""
        interval = self.options.refresh()
        if interval <= 0 or self._poller is not None:
            return
        watch = PolledCounterWatch(db, interval, COUNTER_SQL)
        await watch.poll()
        if watch.stamp() is None:
            return
        self.cache = RecordCache(watch)
        self._poller = asyncio.create_task(watch.run(), name="image-records-poll")

    def close(self) -> None:
        self._opened = False
        self.cache = None
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        if isinstance(self._db, PostgresDatabase):
            self._db.terminate()
        self._db = None


def image_records_for(settings: Settings) -> SQLiteImageRecords | PostgresImageRecords:
    """The records ``[database]`` selects: ``records.sqlite`` under ``data_dir``, or the
    shared PostgreSQL database."""
    options = DatabaseOptions.of(settings)
    if options.url is None:
        return SQLiteImageRecords(settings.records_db)
    return PostgresImageRecords(options)
