"""The audit record's cheap paths: orjson's JSON must be the standard library's, byte for byte,
and the trusted proxies kept per serving app must be that app's, not the last one's."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from gateway.server.audit_record import AuditRecord


def record_with(url: str, account: str | None = None, message: str = "m") -> AuditRecord:
    return AuditRecord(
        "r-1", "getimage", "GET", url, "1.1", "127.0.0.1", 40000, 404, 2, account, 0, 55,
        {"name": "ResourceNotFound", "message": message},
    )  # fmt: skip


@pytest.mark.parametrize(
    "record",
    [
        record_with("/--ping"),  # orjson's path
        record_with("/a?q=" + "".join(map(chr, range(0x7F)))),  # every ASCII escape
        record_with("/del\x7f"),  # DEL: json escapes it, orjson does not
        record_with("/caf\u00e9", account="b\u00f6b"),  # not ASCII: json's escapes
        record_with("/x", message="lone \udc80 surrogate"),  # orjson refuses it
    ],
    ids=["ascii", "ascii-escapes", "del", "non-ascii", "surrogate"],
)
def test_json_members_are_the_standard_librarys(record: AuditRecord) -> None:
    expected = json.dumps(record.fields(), separators=(",", ":"))[1:-1]
    assert record.json_members() == expected
    assert record.escaped_members() == expected


async def test_each_app_keeps_its_own_trusted_proxies(
    app_client: Any, audit_records: Callable[[], list[dict[str, Any]]]
) -> None:
    """Two apps in one process, requests alternating: each record follows its app's settings."""
    trusting = await app_client(trusted_proxies=("127.0.0.1",))
    distrusting = await app_client(trusted_proxies=())
    headers = {"X-Forwarded-For": "198.51.100.1"}
    for client in (trusting, distrusting, trusting, distrusting):
        response = await client.get("/--ping", headers=headers)
        assert response.status == 200
    addresses = [record["req"]["remoteAddress"] for record in audit_records()]
    assert addresses == ["198.51.100.1", "127.0.0.1", "198.51.100.1", "127.0.0.1"]
