"""The journal, as two gateway processes (or instances) sharing one database see it, on each
engine: two SQLite connections to one file, or two PostgreSQL pools on one database."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.journal import Journal, LeaseLost
from gateway.plugin_kit.lease import held
from gateway.server.database import Databases
from gateway.server.journal import DatabaseJournal, SQLiteJournal
from gateway.settings import Settings


@pytest.fixture
async def pair(
    tmp_path: Path, database: dict[str, Any]
) -> AsyncIterator[tuple[DatabaseJournal, DatabaseJournal]]:
    """Two journals on one database, as two processes (or instances) would open it, with
    one-second leases; on each engine in turn."""
    settings = Settings(data_dir=tmp_path, database=database)
    first_db = await Databases.open(settings, ("journal",))
    second_db = await Databases.open(settings, ("journal",))
    yield (
        DatabaseJournal(first_db["journal"], lease_seconds=1.0, owner="first"),
        DatabaseJournal(second_db["journal"], lease_seconds=1.0, owner="second"),
    )
    await first_db.close()
    await second_db.close()


def test_it_is_a_journal(pair: tuple[DatabaseJournal, DatabaseJournal]) -> None:
    assert isinstance(pair[0], Journal)


async def test_one_entry_per_key(pair: tuple[DatabaseJournal, DatabaseJournal]) -> None:
    first, second = pair
    entry = await first.begin("export", "k", "begun", {"n": 1})
    assert entry is not None and entry.owner == "first"
    assert await second.begin("export", "k", "begun", {"n": 2}) is None
    holder = await second.holder("k")
    assert holder is not None and holder.id == entry.id and holder.data == {"n": 1}
    assert await second.begin("export", "other", "begun", {}) is not None
    await first.finish(entry)
    assert await first.holder("k") is None
    assert await second.begin("export", "k", "begun", {}) is not None


async def test_live_lease_cannot_be_taken(pair: tuple[DatabaseJournal, DatabaseJournal]) -> None:
    first, second = pair
    entry = await first.begin("export", "k", "begun", {})
    assert entry is not None
    assert await second.expired() == []
    assert await second.take_over(entry) is None


async def test_expired_lease_is_taken_once(pair: tuple[DatabaseJournal, DatabaseJournal]) -> None:
    first, second = pair
    entry = await first.begin("export", "k", "copying", {"safety": "/a"})
    assert entry is not None
    await first.release(entry)
    (seen,) = await second.expired()
    assert (seen.id, seen.state, seen.data) == (entry.id, "copying", {"safety": "/a"})
    claimed = await second.take_over(seen)
    assert claimed is not None and claimed.owner == "second"
    assert await first.take_over(seen) is None  # compare-and-swap on the owner it saw
    with pytest.raises(LeaseLost):  # the old owner's writes are refused from now on
        await first.update(entry, "replacing", {})
    with pytest.raises(LeaseLost):
        await first.finish(entry)
    updated = await second.update(claimed, "rolling_back", {"x": 1})
    assert (await second.holder("k")) == updated
    await second.finish(updated)
    assert await second.expired() == []


async def test_lease_runs_out_without_renewal(
    pair: tuple[DatabaseJournal, DatabaseJournal],
) -> None:
    first, second = pair
    entry = await first.begin("export", "k", "begun", {})
    assert entry is not None
    await asyncio.sleep(0.6)
    renewed = await first.renew(entry)
    assert renewed.expires > entry.expires
    await asyncio.sleep(0.6)
    assert await second.expired() == []  # renewed in time
    await asyncio.sleep(0.6)
    assert [e.id for e in await second.expired()] == [entry.id]


async def test_held_renews_and_stops_the_holder_when_lost(
    pair: tuple[DatabaseJournal, DatabaseJournal],
) -> None:
    first, second = pair
    entry = await first.begin("export", "k", "begun", {})
    assert entry is not None

    async def long_work() -> str:
        async with held(first, entry) as lease:
            await asyncio.sleep(1.5)  # longer than the lease: only renewals keep it
            assert time.time() < lease.entry.expires
            assert await second.expired() == []
            await first.release(lease.entry)  # as if it had run out ...
            claimed = await second.take_over(lease.entry)
            assert claimed is not None  # ... and another process took it
            await asyncio.sleep(5)  # cancelled by the renewer before this ends
            return "not stopped"

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(asyncio.create_task(long_work()), timeout=4)


async def test_a_journal_on_its_own_sqlite_file(tmp_path: Path) -> None:
    """``SQLiteJournal(path)``: the file is created and migrated, and shared by two opens."""
    one = SQLiteJournal(tmp_path / "j" / "journal.sqlite", lease_seconds=1.0, owner="one")
    two = SQLiteJournal(tmp_path / "j" / "journal.sqlite", lease_seconds=1.0, owner="two")
    try:
        entry = await one.begin("export", "k", "begun", {})
        assert entry is not None
        assert await two.begin("export", "k", "begun", {}) is None
    finally:
        one.close()
        two.close()
