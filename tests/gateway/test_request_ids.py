"""Request ids (``gateway.server.request_ids``): the client's ``request-id``, else its
``x-request-id``, when it is safe to echo, else a fresh uuid; the same id in both response
headers, in every log record of the request, and in the ``x-request-id`` of each storage
request, the sweeper's repairs included (a fresh id per repair)."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from gateway.actions import ActionContext, RecoveryContext
from gateway.catalog import ImageCatalog
from gateway.server.journal import SQLiteJournal
from gateway.server.sweeper import Sweeper
from gateway.settings import Settings
from tests.support.log_capture import Records
from tests.support.storage_targets import TargetHarness, manta_target

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


async def answered_id(client: Any, bunyan: Records, headers: Mapping[str, str]) -> str:
    """Ping with ``headers``; the id answered, checked against both headers and the audit."""
    resp = await client.get("/--ping", headers=dict(headers))
    assert resp.status == 200
    answered: str = resp.headers["Request-Id"]
    assert resp.headers["X-Request-Id"] == answered
    (audit,) = [r for r in bunyan() if r.get("audit") is True]
    assert audit["req_id"] == answered
    return answered


@pytest.mark.parametrize(
    "headers",
    [
        {"request-id": "restify-style-1"},
        {"x-request-id": "client-chosen-2"},
        {"Request-Id": "ab:cd_ef.42", "X-Request-Id": "the-other-one"},  # request-id wins
        {"request-id": "", "x-request-id": "when-request-id-is-empty"},
        {"x-request-id": "a" * 128},  # the longest echoed
    ],
)
async def test_a_safe_client_id_is_echoed_logged_and_audited(
    client: Any, bunyan: Records, headers: dict[str, str]
) -> None:
    expected = [v for k, v in headers.items() if k.lower() == "request-id" and v]
    expected += [v for k, v in headers.items() if k.lower() == "x-request-id"]
    assert await answered_id(client, bunyan, headers) == expected[0]


@pytest.mark.parametrize(
    "headers",
    [
        {"request-id": "a" * 129},
        {"x-request-id": "has space"},
        {"x-request-id": "caf\u00e9"},
        {"request-id": 'quote"d'},
        {"request-id": "<script>"},
        {"request-id": "a;b=c"},
        # The header restify would take is unsafe: a fresh id, not the other header's.
        {"request-id": "bad id", "x-request-id": "good-id"},
    ],
)
async def test_an_unsafe_client_id_is_replaced_by_a_uuid(
    client: Any, bunyan: Records, headers: dict[str, str]
) -> None:
    answered = await answered_id(client, bunyan, headers)
    assert UUID.match(answered), answered


async def test_without_a_client_id_each_request_gets_its_own(client: Any, bunyan: Records) -> None:
    first = await client.get("/--ping")
    second = await client.get("/--ping")
    ids = [first.headers["Request-Id"], second.headers["Request-Id"]]
    assert all(UUID.match(i) for i in ids) and ids[0] != ids[1]
    assert [r["req_id"] for r in bunyan() if r.get("audit")] == ids


async def test_an_id_the_http_parser_accepts_raw_is_still_checked(
    client: Any, bunyan: Records
) -> None:
    """Bytes no client library would send (Latin-1, a tab inside the value) reach the app
    as they are; they are replaced too."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(
            b"GET /--ping HTTP/1.1\r\nHost: x\r\nrequest-id: a\tb\xe9\r\nConnection: close\r\n\r\n"
        )
        await writer.drain()
        head = (await reader.read()).split(b"\r\n\r\n", 1)[0].decode("latin-1")
    finally:
        writer.close()
    assert head.startswith("HTTP/1.1 200"), head
    (answered,) = re.findall(r"(?im)^request-id: ([^\r\n]*)", head)
    assert UUID.match(answered), answered
    (audit,) = [r for r in bunyan() if r.get("audit") is True]
    assert audit["req_id"] == answered


# --- the sweeper's repairs -----------------------------------------------------------------------


class StatRepair:
    """A recoverable action whose repair makes one storage request (a HEAD), as a real
    repair of an export does, and logs."""

    name = "stat-repair"
    schema: Mapping[str, Any] = {"type": "object"}

    async def run(self, ctx: ActionContext, params: Mapping[str, Any]) -> Mapping[str, Any]:
        return {}

    async def recover(self, ctx: RecoveryContext) -> None:
        assert ctx.storage is not None
        await ctx.storage.stat(ctx.entry.key)
        logging.getLogger("plugins.stat_repair").info("repaired %s", ctx.entry.key)
        await ctx.journal.finish(ctx.entry)


@pytest.fixture
async def manta(tmp_path: Path) -> Any:
    async with manta_target(tmp_path / "manta") as harness:
        yield harness


async def test_each_repair_has_its_own_id_in_its_records_and_its_storage_requests(
    manta: TargetHarness, tmp_path: Path, bunyan: Records
) -> None:
    journal = SQLiteJournal(tmp_path / "journal.sqlite", lease_seconds=1.0, owner="dead")
    try:
        keys = [manta.path("one"), manta.path("two")]
        for key in keys:
            entry = await journal.begin("stat-repair", key, "writing", {})
            assert entry is not None
            await journal.release(entry)  # its process died: the lease is over
        catalog: ImageCatalog = None  # type: ignore[assignment]  # the repair needs none
        sweeper = Sweeper(journal, {"stat-repair": StatRepair()}, catalog, manta.target, Settings())
        assert await sweeper.sweep() == 2
    finally:
        journal.close()

    records = bunyan()
    ids = {}
    for key in keys:
        (started,) = [
            r for r in records if r["msg"].startswith("recovering") and f", {key})" in r["msg"]
        ]
        request_id = started["req_id"]
        assert UUID.match(request_id) and started["msg"].endswith(f"as request {request_id}")
        (repaired,) = [r for r in records if r["msg"] == f"repaired {key}"]
        assert repaired["req_id"] == request_id
        (sent,) = [r for r in manta.server.requests if r["req"]["url"] == key]
        assert sent["req"]["headers"]["x-request-id"] == request_id
        ids[key] = request_id
    assert len(set(ids.values())) == 2
