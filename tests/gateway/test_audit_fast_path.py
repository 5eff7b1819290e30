"""The audit record's cheap paths: its line must be the bunyan formatter's, byte for byte, and
the trusted proxies kept per serving app must be that app's, not the last one's."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from typing import Any

import pytest

from gateway.server import logs
from gateway.server.audit_record import AuditRecord


def record_with(url: str, account: str | None = None, message: str = "m") -> AuditRecord:
    return AuditRecord(
        "r-1", "getimage", "GET", url, "1.1", "127.0.0.1", 40000, 404, 2, account, 0, 55,
        {"name": "ResourceNotFound", "message": message},
    )  # fmt: skip


NO_PEER = AuditRecord(
    None, None, "GET", '/caf\u00e9?q="x"\\y\u2028', "1.1", None, None, 409, 3, "b\u00f6b", 0, 12,
    {"name": "InvalidArgument", "message": "tab\there \U0001f600"},
)  # fmt: skip
TIME_MEMBER = re.compile(r'"time":"[^"]+"')


@pytest.mark.parametrize(
    "record",
    [
        record_with("/--ping"),
        record_with("/a?q=" + "".join(map(chr, range(0x80)))),  # every ASCII escape, DEL too
        record_with("/caf\u00e9", account="b\u00f6b"),  # not ASCII
        record_with("/x", message="lone \udc80 surrogate"),
        NO_PEER,  # the fields that may be None, are; quotes, backslashes, U+2028, an emoji
        record_with("/--ping")._replace(err=None, status=200),
    ],
    ids=["ascii", "ascii-escapes", "non-ascii", "surrogate", "nones", "no-error"],
)
@pytest.mark.parametrize("levelno", [logging.INFO, logging.WARNING])
def test_the_audit_line_is_what_the_formatter_writes_for_the_same_record(
    record: AuditRecord, levelno: int
) -> None:
    """``write_audit`` skips the ``LogRecord`` and the formatter: the line must be the
    formatter's, byte for byte (but the time)."""
    formatter = logs.BunyanFormatter()
    log_record = logs.audit_log.makeRecord(
        "gateway.audit", levelno, "", 0, record.message(), (), None, extra=record.fields()
    )
    expected = formatter.format(log_record)
    written = record.bunyan_line(formatter.line_prefix("gateway.audit", levelno), "T")
    assert TIME_MEMBER.sub("", written) == TIME_MEMBER.sub("", expected)
    assert json.loads(written)["time"] == "T"
    assert json.loads(expected)["req"] == json.loads(written)["req"]


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
