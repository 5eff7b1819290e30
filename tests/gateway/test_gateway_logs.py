"""The gateway's logs (``gateway.server.logs``): bunyan records, the request id on every record
of a request, one audit record per request with CloudAPI's route names; the CLI's options."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

from gateway import hookimpl
from gateway.cli import log_options
from gateway.cli.main import build_parser
from gateway.server import logs
from gateway.server.log_stream import LineHandler
from tests.support.helpers import import_image
from tests.support.log_capture import Records

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def audits(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("audit") is True]


# --- the record ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "bunyan_level"),
    [
        (logs.TRACE, 10),
        (logging.DEBUG, 20),
        (logging.INFO, 30),
        (logging.WARNING, 40),
        (logging.ERROR, 50),
        (logging.CRITICAL, 60),
    ],
)
def test_a_record_is_one_bunyan_line(bunyan: Records, level: int, bunyan_level: int) -> None:
    logging.getLogger("plugins.example").setLevel(logs.TRACE)
    try:
        logging.getLogger("plugins.example").log(level, "hello %s", "world", extra={"n": 1})
    finally:
        logging.getLogger("plugins.example").setLevel(logging.NOTSET)
    (record,) = bunyan()
    assert record == {
        "name": "cloudapi-gateway",
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "component": "plugins.example",
        "level": bunyan_level,
        "n": 1,
        "msg": "hello world",
        "time": record["time"],
        "v": 0,
    }
    assert TIME.match(record["time"])


def test_an_exception_is_bunyans_err_and_extra_fields_cannot_replace_bunyans(
    bunyan: Records,
) -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        logging.getLogger("x").exception("failed", extra={"level": "loud", "hostname": "h"})
    (record,) = bunyan()
    assert record["level"] == 50 and record["hostname"] == socket.gethostname()
    assert record["err"]["name"] == "ValueError"
    assert record["err"]["message"] == "bad value"
    assert record["err"]["stack"].startswith("Traceback") and "bad value" in record["err"]["stack"]


def test_botocore_never_logs_below_info(bunyan: Records) -> None:
    """botocore's DEBUG records print signed requests, Authorization included."""
    logging.getLogger("botocore.endpoint").debug("Sending http request: Authorization: x")
    assert bunyan() == []


# --- requests -----------------------------------------------------------------------------------


class ChattyAction:
    """``action=chatty``: logs while it runs, as a plugin would."""

    name = "chatty"
    schema: Mapping[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"action": {"const": "chatty"}},
        "additionalProperties": False,
    }

    async def run(self, ctx: Any, params: Mapping[str, Any]) -> Mapping[str, Any]:
        logging.getLogger("plugins.chatty").info("working on %s", ctx.image.uuid)
        return {"ok": True}


class ChattyPlugin:
    @hookimpl
    def gateway_register_image_actions(self) -> list[Any]:
        return [ChattyAction()]


@pytest.fixture
async def chatty(app_client: Any, caller_factory: Any) -> Any:
    client = await app_client(plugins=(ChattyPlugin(),))
    caller = await caller_factory(client, "alice")
    caller.image = await import_image(client.server.app, caller.account, b"image-bytes")
    return caller


async def test_a_plugins_records_carry_the_request_id(chatty: Any, bunyan: Records) -> None:
    path = f"/alice/images/{chatty.image.uuid}?action=chatty"
    resp = await chatty.request("POST", path)
    assert resp.status == 200, await resp.text()
    request_id = resp.headers["Request-Id"]
    records = bunyan()
    plugin = [r for r in records if r["component"] == "plugins.chatty"]
    assert [r["req_id"] for r in plugin] == [request_id]
    (audit,) = audits(records)
    assert audit["req_id"] == request_id
    # An action that is no CloudAPI operation is audited under CloudAPI's UpdateImage route.
    assert audit["route"] == "updateimage"
    assert audit["account"] == "alice"
    assert audit["req"]["url"] == path
    assert audit["bytesIn"] == 0 and audit["bytesOut"] == len(await resp.read())


async def test_the_clients_request_id_is_the_records(chatty: Any, bunyan: Records) -> None:
    path = f"/alice/images/{chatty.image.uuid}?action=chatty"
    resp = await chatty.request("POST", path, headers={"X-Request-Id": "client-chosen-42"})
    assert resp.headers["Request-Id"] == "client-chosen-42"
    records = bunyan()
    assert {r.get("req_id") for r in records} == {"client-chosen-42"}


@contextmanager
def alone_on_the_root(direct: bool) -> Iterator[None]:
    """With ``direct``, the handler ``configure`` installed is the root's only one for a
    while (the session's sink and pytest's capture stand aside), so that the audit record
    takes its direct path (``write_audit``) as in ``serve``; otherwise, as they are, the
    ``LogRecord`` path."""
    root = logging.getLogger()
    others = [h for h in root.handlers if h not in logs._INSTALLED] if direct else []
    for handler in others:
        root.removeHandler(handler)
    try:
        assert (logs._direct_handler(logging.INFO) is not None) is direct
        yield
    finally:
        for handler in others:
            root.addHandler(handler)


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "log-record"])
async def test_one_audit_record_per_request_with_cloudapis_route_names(
    chatty: Any, bunyan: Records, direct: bool
) -> None:
    image = chatty.image.uuid
    sent = [
        ("GET", "/--ping", 200, "ping"),
        ("GET", "/alice/images", 200, "listimages"),
        ("HEAD", "/alice/images", 200, "headimages"),
        ("GET", f"/alice/images/{image}", 200, "getimage"),
        ("HEAD", f"/alice/images/{image}", 200, "headimage"),
        ("POST", f"/alice/images/{image}?action=update&name=renamed", 200, "updateimage"),
        ("POST", f"/alice/images/{image}?action=clone", 422, "cloneimage"),
        ("POST", f"/alice/images/{image}?action=nosuch", 409, "updateimage"),
        ("POST", "/alice/images", 501, "createimagefrommachine"),
        ("DELETE", f"/alice/images/{image}", 204, "deleteimage"),
        ("GET", "/alice/nothing-here", 404, None),
    ]
    with alone_on_the_root(direct):
        for method, path, status, _ in sent:
            resp = await chatty.request(method, path)
            assert resp.status == status, (method, path, await resp.text())
        records = audits(bunyan())
    assert [
        (r["req"]["method"], r["req"]["url"], r["res"]["statusCode"], r["route"]) for r in records
    ] == sent
    for record in records:
        assert record["component"] == "gateway.audit"
        assert record["level"] == (40 if record["res"]["statusCode"] >= 500 else 30)
        assert record["msg"].startswith(f"handled: {record['res']['statusCode']} ")
        assert record["req"]["remoteAddress"] == "127.0.0.1"
        assert isinstance(record["latency"], int)
    assert records[0]["account"] is None  # ping is not authenticated
    assert {r["account"] for r in records[1:-1]} == {"alice"}
    nosuch = records[7]
    assert nosuch["err"] == {
        "name": "InvalidArgument",
        "message": "action nosuch is not a valid argument",
    }


async def test_an_internal_error_is_audited_as_a_warning(
    app_client: Any, caller_factory: Any, bunyan: Records
) -> None:
    from tests.support.helpers import EchoPlugin

    client = await app_client(plugins=(EchoPlugin(),))
    caller = await caller_factory(client, "alice")
    image = await import_image(client.server.app, caller.account, b"x")
    resp = await caller.request("POST", f"/alice/images/{image.uuid}?action=echo&word=boom")
    assert resp.status == 500
    records = bunyan()
    crash = [r for r in records if r["level"] == 50]
    assert crash and crash[0]["err"]["name"] == "RuntimeError"
    assert crash[0]["req_id"] == resp.headers["Request-Id"]
    (audit,) = audits(records)
    assert (audit["level"], audit["res"]["statusCode"]) == (40, 500)
    assert audit["err"] == {"name": "InternalError", "message": "Internal Error"}


# --- the audit record's fast path and the line handler ------------------------------------------


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_other_handlers_get_the_audit_record_and_ours_writes_it_once(
    client: Any, bunyan: Records
) -> None:
    kept = Kept()
    logs.audit_log.addHandler(kept)
    try:
        resp = await client.get("/--ping", headers={"x-request-id": "once-1"})
        assert resp.status == 200
    finally:
        logs.audit_log.removeHandler(kept)
    (audit,) = audits(bunyan())
    assert audit["req_id"] == "once-1" and audit["route"] == "ping"
    (record,) = kept.records
    assert record.getMessage() == audit["msg"]
    assert (record.req_id, record.route, record.res) == ("once-1", "ping", {"statusCode": 200})  # type: ignore[attr-defined]


async def test_no_audit_record_below_the_level(client: Any) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = logs.configure("error", "json", stream=stream)
    try:
        assert (await client.get("/--ping")).status == 200
        assert (await client.get("/no/such/route")).status == 404
        await asyncio.sleep(0)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert stream.getvalue() == ""


class CountedWrites(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


async def written_by(stream: io.StringIO, text: str) -> None:
    for _ in range(500):  # the handler's timer: a few milliseconds
        if stream.getvalue() == text:
            return
        await asyncio.sleep(0.002)
    assert stream.getvalue() == text


async def test_lines_queued_together_are_written_together_a_moment_later() -> None:
    stream = CountedWrites()
    handler = LineHandler(stream)
    for n in range(3):
        handler.write_line(f"line {n}\n")
        await asyncio.sleep(0)  # other steps of the loop run meanwhile
    assert stream.getvalue() == ""
    await written_by(stream, "line 0\nline 1\nline 2\n")
    assert stream.writes == 1


async def test_a_line_queued_unwritten_is_rendered_in_its_place_when_written() -> None:
    stream = CountedWrites()
    handler = LineHandler(stream)
    rendered: list[str] = []

    def render(text: str) -> str:
        rendered.append(text)
        return text + "\n"

    handler.write_line("first\n")
    handler.write_later(render, "second")
    handler.write_line("third\n")
    assert rendered == []  # not yet: when the queue is written
    await written_by(stream, "first\nsecond\nthird\n")
    assert rendered == ["second"]


async def test_a_renderer_may_log_while_the_queue_is_written() -> None:
    """Rendering happens inside the write: a record it logs is queued, not a deadlock."""
    stream = CountedWrites()
    handler = LineHandler(stream)

    def chatty(text: str) -> str:
        handler.write_line("logged while rendering\n")
        return text

    handler.write_later(chatty, "rendered\n")
    handler.flush()
    assert stream.getvalue() == "rendered\n"
    await written_by(stream, "rendered\nlogged while rendering\n")


async def test_a_renderer_that_fails_loses_only_its_own_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = CountedWrites()
    handler = LineHandler(stream)

    def broken() -> str:
        raise RuntimeError("a bug")

    handler.write_line("before\n")
    handler.write_later(broken)
    handler.write_line("after\n")
    handler.flush()
    assert stream.getvalue() == "before\nafter\n"
    assert "RuntimeError: a bug" in capsys.readouterr().err  # said as logging says it


async def test_a_full_queue_and_close_write_at_once() -> None:
    stream = CountedWrites()
    handler = LineHandler(stream)
    line = "x" * 1023 + "\n"
    for _ in range(LineHandler.LIMIT // len(line)):
        handler.write_line(line)
    assert len(stream.getvalue()) == LineHandler.LIMIT
    handler.write_line("last\n")
    handler.close()
    assert stream.getvalue().endswith(line + "last\n")


def test_without_a_running_loop_a_line_is_written_at_once() -> None:
    stream = CountedWrites()
    handler = LineHandler(stream)
    handler.setFormatter(logs.BunyanFormatter())
    handler.handle(logging.LogRecord("x", logging.INFO, "", 0, "now", None, None))
    assert json.loads(stream.getvalue())["msg"] == "now"


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    access = logging.getLogger(logs.ACCESS_LOGGER).level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        logging.getLogger(logs.ACCESS_LOGGER).setLevel(access)


def test_serve_logs_json_by_default_and_text_when_asked(
    restore_root: None, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    log_options.configure(parser.parse_args(["serve", "--log-level", "warn"]))
    logging.getLogger("gateway.example").info("not shown")
    logging.getLogger("gateway.example").warning("shown")
    (line,) = capsys.readouterr().err.splitlines()
    assert json.loads(line)["msg"] == "shown"

    log_options.configure(parser.parse_args(["serve", "--log-format", "text"]))
    logging.getLogger("gateway.example").info("for humans")
    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"\S+Z INFO gateway\.example: for humans", line), line


def test_dev_mode_logs_text_by_default() -> None:
    args = build_parser().parse_args(["dev"])
    assert (args.log_format, args.log_level) == ("text", "info")
    assert build_parser().parse_args(["serve"]).log_format == "json"
