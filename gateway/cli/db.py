"""``cloudapi-gateway db upgrade`` and ``db copy``: the gateway's database schema and data.

``upgrade`` applies the pending migrations (``gateway.server.database.schema``) to the
database the settings select: the PostgreSQL database of ``[database] url`` (one upgrader at a
time, in one transaction), or each SQLite file under the data dir. Migrations only add, so
instances of the previous release keep running on the upgraded schema.

``copy`` moves what a data dir's SQLite files hold (accounts, keys, the export journal, image
records) into the PostgreSQL database of ``[database] url`` (or ``--to``), in one transaction:
the target is upgraded first, must hold none of those rows yet, and gets all of them or none.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from gateway.cli.common import CliError, common_options
from gateway.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from gateway.server.database.postgres import PostgresDatabase


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(
            getattr(args, "config", None), overrides={"data_dir": getattr(args, "data_dir", None)}
        )
    except SettingsError as exc:
        raise CliError(str(exc)) from None


async def _connect(url: str, settings: Settings) -> PostgresDatabase:
    from gateway.server.database import DatabaseError, DatabaseOptions
    from gateway.server.database.postgres import PoolOptions, PostgresDatabase

    options = DatabaseOptions.of(settings)
    pool = PoolOptions(
        url=url,
        pool_size=2,
        statement_timeout=max(options.statement_timeout, 300.0),  # DDL and bulk copies
        connect_timeout=options.connect_timeout,
    )
    try:
        return await PostgresDatabase.connect(pool)
    except DatabaseError as exc:
        raise CliError(f"cannot connect to the database: {exc}") from None


async def _upgrade(args: argparse.Namespace) -> None:
    from gateway.server.database import DatabaseOptions, sqlite_path
    from gateway.server.database.schema import AREAS, KNOWN
    from gateway.server.database.sqlite import SQLiteDatabase

    settings = _settings(args)
    url = DatabaseOptions.of(settings).url
    if url is None:
        for area in AREAS:
            path = sqlite_path(settings, area)
            db = await asyncio.to_thread(SQLiteDatabase.open, path, (area,))
            await db.close()
            print(f"{area}: {path} at version {KNOWN[area]}")
        return
    pg = await _connect(url, settings)
    try:
        applied = await pg.upgrade()
        for migration in applied:
            print(f"applied {migration.area} {migration.version}: {migration.description}")
        for state in (await pg.schema_state()).values():
            print(f"{state.area}: version {state.version}")
        await pg.verify()
    finally:
        await pg.close()
    if not applied:
        print("the database was up to date")


async def _copy(args: argparse.Namespace) -> None:
    from gateway.server.database import DatabaseOptions, sqlite_path
    from gateway.server.database.schema import AREAS, TABLES
    from gateway.server.database.sqlite import SQLiteDatabase

    settings = _settings(args)
    url = args.to or DatabaseOptions.of(settings).url
    if url is None:
        raise CliError("no target: set [database] url (or CLOUDAPI_GATEWAY_DATABASE_URL), or --to")
    if not url.startswith(("postgresql://", "postgres://")):
        raise CliError("--to must be a postgresql:// URL")
    sources = {area: sqlite_path(settings, area) for area in AREAS}
    present = {area: path for area, path in sources.items() if path.is_file()}
    if not present:
        raise CliError(f"no SQLite database under {settings.data_dir} to copy")
    pg = await _connect(url, settings)
    try:
        await pg.upgrade()
        async with pg.transaction() as tx:
            for area in present:
                for table in TABLES[area]:
                    row = await tx.fetchone(f"SELECT 1 FROM {table} LIMIT 1")
                    if row is not None:
                        raise CliError(
                            f"the target already holds rows in {table}: copy only into an "
                            "empty database (nothing was copied)"
                        )
            for area, path in present.items():
                db = await asyncio.to_thread(SQLiteDatabase.open, path, (area,))
                try:
                    for table in TABLES[area]:
                        columns = _COLUMNS[table]
                        rows = await db.fetch(
                            f"SELECT {columns} FROM {table} ORDER BY {_ORDER[table]}"
                        )
                        marks = ", ".join("?" for _ in columns.split(","))
                        for row in rows:
                            await tx.execute(
                                f"INSERT INTO {table} ({columns}) VALUES ({marks})", *row
                            )
                        print(f"{table}: {len(rows)} rows from {path}")
                finally:
                    await db.close()
    finally:
        await pg.close()


#: The columns ``copy`` moves, per table (a serial column is left to the target).
_COLUMNS = {
    "accounts": "uuid, login, disabled, created",
    "keys": "login, name, fingerprint, public_key, created",
    "journal": "id, action, key, state, data, owner, expires, created",
    "image_records": "uuid, manifest, files, locations, created",
    "image_locations": "location, uuid",
}
#: Source order: records oldest first, so that "oldest first" survives the move.
_ORDER = {
    "accounts": "login",
    "keys": "login, name",
    "journal": "created",
    "image_records": "rowid",
    "image_locations": "uuid, location",
}


def _handler(
    work: Callable[[argparse.Namespace], Coroutine[Any, Any, None]],
) -> Callable[[argparse.Namespace], int]:
    """Run ``work``; refusals and database failures become one line and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        from gateway.server.database import DatabaseError

        try:
            asyncio.run(work(args))
        except (CliError, DatabaseError) as exc:
            print(f"cloudapi-gateway: error: {exc}", file=sys.stderr)
            return 1
        return 0

    return run


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``db`` command group to the main CLI's subparsers."""
    common = common_options("data directory (holds the SQLite databases)")
    db = subparsers.add_parser("db", help="the gateway's database: schema upgrades, copying")
    commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    p = commands.add_parser(
        "upgrade",
        parents=[common],
        help="apply pending schema migrations ([database] url, or the SQLite files)",
    )
    p.set_defaults(func=_handler(_upgrade))
    p = commands.add_parser(
        "copy",
        parents=[common],
        help="copy the data dir's SQLite databases into an empty PostgreSQL database",
    )
    p.add_argument("--to", metavar="URL", help="target postgresql:// URL (default: [database] url)")
    p.set_defaults(func=_handler(_copy))
