"""The sweeper: expired journal entries reach their action's ``recover``, once, until it works."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway.actions import ActionContext, RecoverableAction, RecoveryContext
from gateway.catalog import ImageCatalog
from gateway.server.database import Databases
from gateway.server.journal import DatabaseJournal
from gateway.server.sweeper import Sweeper
from gateway.settings import Settings


class Repairer:
    """A recoverable action that fails its first ``failures`` recoveries."""

    name = "repair"
    schema: Mapping[str, Any] = {"type": "object"}

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.recovered: list[tuple[str, str]] = []

    async def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
        return {}

    async def recover(self, ctx: RecoveryContext) -> None:
        await asyncio.sleep(0.05)  # long enough for a rival sweeper to try the same entry
        if self.failures:
            self.failures -= 1
            raise RuntimeError("storage still down")
        self.recovered.append((ctx.entry.key, ctx.journal.owner))
        await ctx.journal.finish(ctx.entry)


@pytest.fixture
async def journals(
    tmp_path: Path, database: dict[str, Any]
) -> AsyncIterator[tuple[DatabaseJournal, DatabaseJournal]]:
    """Two instances' journals on one database, on each engine in turn."""
    settings = Settings(data_dir=tmp_path, database=database)
    one_db = await Databases.open(settings, ("journal",))
    two_db = await Databases.open(settings, ("journal",))
    yield (
        DatabaseJournal(one_db["journal"], lease_seconds=1.0, owner="one"),
        DatabaseJournal(two_db["journal"], lease_seconds=1.0, owner="two"),
    )
    await one_db.close()
    await two_db.close()


def sweeper(journal: DatabaseJournal, *actions: Any) -> Sweeper:
    catalog: ImageCatalog = None  # type: ignore[assignment]  # recover here needs none
    return Sweeper(journal, {a.name: a for a in actions}, catalog, None, Settings())


async def dead_entry(journal: DatabaseJournal, action: str, key: str) -> None:
    entry = await journal.begin(action, key, "replacing", {"k": key})
    assert entry is not None
    await journal.release(entry)  # as if its process had died and the lease run out


def test_the_repairer_is_recoverable() -> None:
    assert isinstance(Repairer(), RecoverableAction)


async def test_each_expired_entry_is_recovered_once_by_one_of_two_sweepers(
    journals: tuple[DatabaseJournal, DatabaseJournal],
) -> None:
    one, two = journals
    for key in ("a", "b", "c"):
        await dead_entry(one, "repair", key)
    action = Repairer()
    counts = await asyncio.gather(sweeper(one, action).sweep(), sweeper(two, action).sweep())
    assert sum(counts) == 3
    assert sorted(key for key, _ in action.recovered) == ["a", "b", "c"]
    assert await one.expired() == []


async def test_a_failed_recovery_is_retried_at_the_next_sweep(
    journals: tuple[DatabaseJournal, DatabaseJournal],
) -> None:
    one, _ = journals
    await dead_entry(one, "repair", "a")
    action = Repairer(failures=1)
    sweep = sweeper(one, action)
    assert await sweep.sweep() == 0
    assert [e.key for e in await one.expired()] == ["a"]  # released again, not lost
    assert await sweep.sweep() == 1
    assert action.recovered == [("a", "one")]
    assert await one.holder("a") is None


async def test_an_entry_of_an_action_not_loaded_is_left_alone(
    journals: tuple[DatabaseJournal, DatabaseJournal], caplog: pytest.LogCaptureFixture
) -> None:
    one, _ = journals
    await dead_entry(one, "elsewhere", "a")
    sweep = sweeper(one, Repairer())
    with caplog.at_level(logging.WARNING, logger="gateway.server.sweeper"):
        assert await sweep.sweep() == 0
        assert await sweep.sweep() == 0
    assert caplog.text.count("cannot be recovered here") == 1
    (entry,) = await one.expired()
    assert (entry.key, entry.owner) == ("a", "one")  # untouched
