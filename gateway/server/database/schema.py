"""The gateway's schema, as one ordered list of migrations per area, for both engines.

Areas are the stores: ``accounts`` (accounts, keys, and the change counter that tells other
instances to drop their caches), ``journal`` (the export intent journal) and ``records`` (the
image records lent to catalog plugins, and their own change counter). With SQLite each area
keeps its own file under ``data_dir``, as before migrations existed; with PostgreSQL they share
one database.

Rules for adding a migration (rolling upgrades run old and new instances side by side):
expand first (new tables, new nullable columns, new indexes), and only in a later release
contract (drop what no running release reads), raising ``readers_from`` to the oldest version
of the area whose code still works after it. Version 1 of each area is the schema that the
stores created before migrations existed (``CREATE ... IF NOT EXISTS``), so a file from then is
simply recorded at version 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.server.database.base import Engine


@dataclass(frozen=True)
class Migration:
    area: str
    version: int
    description: str
    #: Statements for both engines, run first, in order.
    common: tuple[str, ...] = ()
    sqlite: tuple[str, ...] = ()
    postgresql: tuple[str, ...] = ()
    #: The oldest schema version (of this area) whose code still works once this is applied:
    #: the previous migration's for an additive one, higher for one that removes something.
    readers_from: int = 1

    def statements(self, engine: Engine) -> tuple[str, ...]:
        return self.common + (self.sqlite if engine == "sqlite" else self.postgresql)


MIGRATIONS_TABLE_SQL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    area TEXT NOT NULL,
    version INTEGER NOT NULL,
    readers_from INTEGER NOT NULL,
    description TEXT NOT NULL,
    applied TEXT NOT NULL,
    PRIMARY KEY (area, version)
)
"""

_ACCOUNT_TABLES = ("accounts", "keys")
_LOCATIONS = (
    """CREATE TABLE IF NOT EXISTS image_locations (
        location TEXT NOT NULL,
        uuid TEXT NOT NULL REFERENCES image_records (uuid) ON DELETE CASCADE,
        PRIMARY KEY (location, uuid)
    )""",
    "CREATE INDEX IF NOT EXISTS image_locations_uuid ON image_locations (uuid)",
)

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "accounts",
        1,
        "accounts and their SSH keys",
        common=(
            """CREATE TABLE IF NOT EXISTS accounts (
                uuid TEXT PRIMARY KEY,
                login TEXT NOT NULL UNIQUE,
                disabled INTEGER NOT NULL DEFAULT 0,
                created TEXT NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS keys (
                login TEXT NOT NULL REFERENCES accounts(login) ON DELETE CASCADE,
                name TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                public_key TEXT NOT NULL,
                created TEXT NOT NULL,
                PRIMARY KEY (login, name),
                UNIQUE (login, fingerprint)
            )""",
        ),
    ),
    Migration(
        "accounts",
        2,
        "a change counter bumped by triggers on every account or key write",
        common=(
            """CREATE TABLE IF NOT EXISTS account_changes (
                id INTEGER PRIMARY KEY,
                serial BIGINT NOT NULL
            )""",
            "INSERT INTO account_changes (id, serial) VALUES (1, 0) ON CONFLICT DO NOTHING",
        ),
        # SQLite triggers name one event each; writers of any version bump the counter.
        sqlite=tuple(
            f"""CREATE TRIGGER IF NOT EXISTS {table}_{event.lower()}_counted
                AFTER {event} ON {table}
                BEGIN UPDATE account_changes SET serial = serial + 1 WHERE id = 1; END"""
            for table in _ACCOUNT_TABLES
            for event in ("INSERT", "UPDATE", "DELETE")
        ),
        postgresql=(
            """CREATE OR REPLACE FUNCTION count_account_change() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN
                    UPDATE account_changes SET serial = serial + 1 WHERE id = 1;
                    RETURN NULL;
                END $$""",
            *(
                f"""CREATE TRIGGER {table}_counted
                    AFTER INSERT OR UPDATE OR DELETE ON {table}
                    FOR EACH STATEMENT EXECUTE FUNCTION count_account_change()"""
                for table in _ACCOUNT_TABLES
            ),
        ),
    ),
    Migration(
        "journal",
        1,
        "the export intent journal",
        common=(
            """CREATE TABLE IF NOT EXISTS journal (
                id TEXT PRIMARY KEY,
                action TEXT NOT NULL,
                key TEXT NOT NULL UNIQUE,
                state TEXT NOT NULL,
                data TEXT NOT NULL,
                owner TEXT NOT NULL,
                expires DOUBLE PRECISION NOT NULL,
                created DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS journal_expires ON journal (expires)",
        ),
    ),
    Migration(
        "records",
        1,
        "image records kept for catalog plugins, and which records use each location",
        sqlite=(
            """CREATE TABLE IF NOT EXISTS image_records (
                uuid TEXT PRIMARY KEY,
                manifest TEXT NOT NULL,
                files TEXT NOT NULL,
                locations TEXT NOT NULL,
                created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
            )""",
            *_LOCATIONS,
        ),
        # "Oldest first" is ``ORDER BY rowid`` on both engines: SQLite's implicit rowid, and
        # here a serial column given the same name.
        postgresql=(
            """CREATE TABLE IF NOT EXISTS image_records (
                uuid TEXT PRIMARY KEY,
                manifest TEXT NOT NULL,
                files TEXT NOT NULL,
                locations TEXT NOT NULL,
                created TEXT NOT NULL DEFAULT
                    to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
                rowid BIGSERIAL NOT NULL UNIQUE
            )""",
            *_LOCATIONS,
        ),
    ),
    Migration(
        "records",
        2,
        "a change counter bumped by triggers on every image record write",
        common=(
            """CREATE TABLE IF NOT EXISTS image_record_changes (
                id INTEGER PRIMARY KEY,
                serial BIGINT NOT NULL
            )""",
            "INSERT INTO image_record_changes (id, serial) VALUES (1, 0) ON CONFLICT DO NOTHING",
        ),
        sqlite=tuple(
            f"""CREATE TRIGGER IF NOT EXISTS image_records_{event.lower()}_counted
                AFTER {event} ON image_records
                BEGIN UPDATE image_record_changes SET serial = serial + 1 WHERE id = 1; END"""
            for event in ("INSERT", "UPDATE", "DELETE")
        ),
        postgresql=(
            """CREATE OR REPLACE FUNCTION count_image_record_change() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN
                    UPDATE image_record_changes SET serial = serial + 1 WHERE id = 1;
                    RETURN NULL;
                END $$""",
            """CREATE TRIGGER image_records_counted
                AFTER INSERT OR UPDATE OR DELETE ON image_records
                FOR EACH STATEMENT EXECUTE FUNCTION count_image_record_change()""",
        ),
    ),
)

AREAS: tuple[str, ...] = ("accounts", "journal", "records")
#: The newest version of each area this code knows how to create.
KNOWN: dict[str, int] = {
    area: max(m.version for m in MIGRATIONS if m.area == area) for area in AREAS
}
#: The oldest version of each area this code can work with (it uses everything up to it).
NEEDS: dict[str, int] = {"accounts": 2, "journal": 1, "records": 1}
#: Tables of each area, parents first (``db copy`` copies them in this order).
TABLES: dict[str, tuple[str, ...]] = {
    "accounts": ("accounts", "keys"),
    "journal": ("journal",),
    "records": ("image_records", "image_locations"),
}
