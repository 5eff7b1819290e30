"""The logs of an export, as ``cloudapi-gateway serve`` writes them (``gateway.server.logs``):
bunyan records parsed back from the stream, one request id from the gateway's audit record
through the storage plugin's records to the ``x-request-id`` the store received; the export's
own record, and the warning of a failed one."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import re
import socket
from typing import Any

import pytest
from yarl import URL

from gateway.server import logs
from tests.support.export_env import ExportEnv
from tests.support.log_capture import Records
from tests.support.storage_targets import RETRIES

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def blob(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


async def export(
    env: ExportEnv, uuid: str, manta_path: str, **extra_headers: str
) -> tuple[int, str, bytes]:
    """``triton image export``'s request (plus ``extra_headers``, ``_`` for ``-``); returns
    the status, the Request-Id and the body."""
    path = f"/bob/images/{uuid}"
    body = json.dumps({"action": "export", "manta_path": manta_path}).encode()
    headers = env.signers["bob"].sign(
        "POST", path, {"Accept": "application/json", "Content-Type": "application/json"}
    )
    headers.update({name.replace("_", "-"): value for name, value in extra_headers.items()})
    response = await env.client.request("POST", URL(path), headers=headers, data=body)
    return response.status, response.headers["Request-Id"], await response.read()


def one(records: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    found = [r for r in records if all(r.get(k) == v for k, v in fields.items())]
    assert len(found) == 1, (fields, found)
    return found[0]


def received_request_ids(env: ExportEnv) -> list[str | None]:
    """The ``x-request-id`` of every request the store received under the caller's tree."""
    tree = f"/{env.harness.login}/"
    if env.harness.name == "s3":
        proxy = env.harness.extra["proxy"]
        return [
            headers.get("x-request-id") for _method, path, headers in proxy.requests if tree in path
        ]
    return [
        record["req"]["headers"].get("x-request-id")
        for record in env.harness.server.requests
        if record["req"]["url"].startswith(tree)
    ]


def check_bunyan(record: dict[str, Any]) -> None:
    """The fields every bunyan record has, with bunyan's types."""
    assert record["v"] == 0
    assert record["level"] in (10, 20, 30, 40, 50, 60)
    assert record["name"] == "cloudapi-gateway"
    assert record["hostname"] == socket.gethostname()
    assert record["pid"] == os.getpid()
    assert TIME.match(record["time"]), record["time"]
    assert isinstance(record["msg"], str)


async def test_one_request_id_from_the_audit_record_to_the_store(
    env: ExportEnv, bunyan: Records
) -> None:
    """A transient store failure makes the storage plugin log (a retry warning): the audit
    record, the plugin's warning, the export's record and every request the store received
    carry the id the client got in ``Request-Id``."""
    data = blob(64 * 1024)
    image = await env.image(data)
    env.harness.faults.add(method="PUT", path=r"\.zfs$", status=503, times=1)
    status, request_id, body = await export(env, image.uuid, env.path("img"))
    assert status == 200, body
    records = bunyan()
    for record in records:
        check_bunyan(record)

    audit = one(records, audit=True, req_id=request_id)
    assert audit["component"] == "gateway.audit"
    assert audit["level"] == 30
    assert audit["route"] == "exportimage"
    assert audit["req"]["method"] == "POST"
    assert audit["req"]["url"] == f"/bob/images/{image.uuid}"
    assert audit["req"]["remoteAddress"] == "127.0.0.1"
    assert isinstance(audit["req"]["remotePort"], int)
    assert audit["res"] == {"statusCode": 200}
    assert isinstance(audit["latency"], int) and audit["latency"] >= 0
    assert audit["account"] == "bob"
    sent = json.dumps({"action": "export", "manta_path": env.path("img")}).encode()
    assert audit["bytesIn"] == len(sent)
    assert audit["bytesOut"] == len(body)
    assert "headers" not in audit["req"]  # no Authorization in logs, nor any other header

    plugin = f"plugins.storage.{env.harness.storage['kind']}"
    retries = [r for r in records if r["component"] == plugin]
    assert len(retries) == 1, retries
    assert retries[0]["level"] == 40
    assert retries[0]["req_id"] == request_id
    assert "retry 1" in retries[0]["msg"]

    received = received_request_ids(env)
    assert received and set(received) == {request_id}, received

    record = one(records, export=True)
    assert record["req_id"] == request_id
    assert record["level"] == 30
    assert record["component"] == "plugins.actions.export"
    assert record["image"] == image.uuid
    assert record["manta_path"] == env.path("img")
    assert record["manifest_path"] == env.path("img.imgmanifest")
    assert record["image_path"] == env.path("img.zfs")
    assert record["bytes"] == len(data)
    assert isinstance(record["duration"], float) and record["duration"] >= 0
    assert isinstance(record["throughput"], int) and record["throughput"] > 0
    assert record["retries"] == 1
    assert record["storage"] == env.harness.storage["kind"]
    assert record["storage_url"] == env.harness.storage["public_url"]
    assert record["outcome"] == "ok" and record["code"] is None
    # Everything logged during the request is the request's.
    assert {r.get("req_id") for r in records if r["component"] != "gateway.audit"} <= {
        request_id,
        None,
    }


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        ({"request_id": "triton-cli-7", "x_request_id": "ignored"}, "triton-cli-7"),
        ({"x_request_id": "proxy:0001"}, "proxy:0001"),
        ({"request_id": "not safe to echo"}, None),
    ],
)
async def test_the_clients_request_id_is_the_one_the_store_receives(
    manta_env: ExportEnv, bunyan: Records, sent: dict[str, str], echoed: str | None
) -> None:
    """``request-id`` (restify's first choice), else ``x-request-id``, when safe; a fresh
    uuid otherwise: the same id answered, audited and sent to the store."""
    image = await manta_env.image(blob(4096, seed=9))
    status, request_id, body = await export(manta_env, image.uuid, manta_env.path("rid"), **sent)
    assert status == 200, body
    if echoed is not None:
        assert request_id == echoed
    else:
        assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", request_id)
    assert one(bunyan(), audit=True)["req_id"] == request_id
    received = received_request_ids(manta_env)
    assert received and set(received) == {request_id}, received


async def test_a_failed_export_is_a_warning_with_its_reason(
    env: ExportEnv, bunyan: Records
) -> None:
    image = await env.image(blob(64 * 1024, seed=8))
    env.harness.faults.add(method="PUT", path=r"\.zfs$", status=503, times=RETRIES + 1)
    status, request_id, body = await export(env, image.uuid, env.path("img"))
    assert status == 503, body
    records = bunyan()

    record = one(records, export=True)
    assert record["level"] == 40
    assert record["req_id"] == request_id
    assert record["outcome"] == "failed"
    assert record["code"] == "StorageIsDown"
    assert record["reason"] == json.loads(body)["message"]
    assert record["bytes"] == 0
    assert record["retries"] == RETRIES
    assert record["image_path"] == env.path("img.zfs")
    assert "failed: StorageIsDown" in record["msg"]

    retries = [r for r in records if r["component"].startswith("plugins.storage.")]
    assert [r["level"] for r in retries] == [40] * RETRIES
    assert {r["req_id"] for r in retries} == {request_id}

    audit = one(records, audit=True)
    assert audit["level"] == 40  # a 5xx, as restify's audit logger warns
    assert audit["res"] == {"statusCode": 503}
    assert audit["err"]["name"] == "StorageIsDown"


async def test_an_export_refused_before_writing_is_a_warning_too(
    manta_env: ExportEnv, bunyan: Records
) -> None:
    image = await manta_env.image(b"x")
    status, request_id, _ = await export(manta_env, image.uuid, "/alice/stor/not-yours")
    assert status == 422
    records = bunyan()
    record = one(records, export=True)
    assert (record["level"], record["outcome"], record["code"]) == (
        40,
        "failed",
        "NotMantaPathOwner",
    )
    assert record["req_id"] == request_id
    assert record["manifest_path"] is None and record["retries"] == 0
    assert one(records, audit=True)["route"] == "exportimage"


async def test_text_format(manta_env: ExportEnv) -> None:
    """``--log-format text``: one line a record, for humans, with the request id."""
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure("info", "text", stream=stream)
    try:
        image = await manta_env.image(b"some bytes")
        status, request_id, _ = await export(manta_env, image.uuid, manta_env.path("t"))
    finally:
        handler.flush()  # what it still holds (it writes every few milliseconds)
        root.removeHandler(handler)
        root.setLevel(level)
    assert status == 200
    lines = stream.getvalue().splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert any(
        re.fullmatch(
            rf"{stamp} INFO gateway\.audit \[{request_id}\]: handled: 200 POST "
            rf"/bob/images/{image.uuid} \(exportimage, \d+ ms\)",
            line,
        )
        for line in lines
    ), lines
    assert any(
        re.fullmatch(
            rf"{stamp} INFO plugins\.actions\.export \[{request_id}\]: export of {image.uuid} "
            rf"to {manta_env.path('t')}: ok, 10 bytes in .*, 0 retries",
            line,
        )
        for line in lines
    ), lines
    assert not any(line.lstrip().startswith("{") for line in lines)
