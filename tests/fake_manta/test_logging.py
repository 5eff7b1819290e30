"""``fake-manta -v``: one bunyan audit record per request, with muskie's field names; the
in-memory request log of an embedded server.

The CLI runs as a real subprocess (``python -m fake_manta``); its stderr is parsed line by line.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from fake_manta import ADMIN_HEADERS, FakeMantaServer, ThreadedFakeManta
from fake_manta.logs import BunyanFormatter, bunyan_level, redact_url
from fake_manta.routes import route_name
from gateway.httpsig import RequestSigner, ssh_public_key_line

ROOT = Path(__file__).resolve().parents[2]
KEY = ed25519.Ed25519PrivateKey.generate()
ISO_MS_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DIR_CT = "application/json; type=directory"
ADMIN_JSON = {**ADMIN_HEADERS, "Content-Type": "application/json"}


class CliServer:
    """``python -m fake_manta ARGS``: the URL from the banner, stderr collected by a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fake_manta", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        assert "listening on " in first, first + self.proc.communicate(timeout=10)[1]
        self.url = first.split("listening on ")[1].split()[0]
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, count: int, match: str = "", timeout: float = 10.0) -> list[str]:
        """The stderr lines so far, once ``count`` of them contain ``match``."""
        deadline = time.monotonic() + timeout
        while sum(match in line for line in self.lines) < count:
            assert time.monotonic() < deadline, "\n".join(self.lines)
            time.sleep(0.02)
        return list(self.lines)

    def stop(self) -> str:
        self.proc.terminate()
        assert self.proc.wait(timeout=30) == 0
        self._reader.join(timeout=10)
        return "\n".join(self.lines)


def call(url: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def signed(signer: RequestSigner, method: str, path: str,
           headers: dict[str, str] | None = None) -> dict[str, str]:
    return signer.sign(method, path, headers or {})


@pytest.fixture
def pubkey(tmp_path: Path) -> Path:
    path = tmp_path / "alice.pub"
    path.write_text(ssh_public_key_line(KEY) + "\n")
    return path


@pytest.fixture
def verbose_cli(pubkey: Path) -> Iterator[CliServer]:
    server = CliServer("--account", f"alice={pubkey}", "-v")
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def test_verbose_logs_one_bunyan_audit_record_per_request(verbose_cli: CliServer) -> None:
    url = verbose_cli.url
    signer = RequestSigner.for_login(KEY, "alice")
    sent_authorizations = []

    put_headers = signed(signer, "PUT", "/alice/stor/hello.txt",
                         {"x-request-id": "export-req-1", "Content-Type": "text/plain"})
    sent_authorizations.append(put_headers["Authorization"])
    status, put_resp, _ = call(f"{url}/alice/stor/hello.txt", "PUT", b"hello\n", put_headers)
    assert status == 204

    get_headers = signed(signer, "GET", "/alice/stor/hello.txt")
    sent_authorizations.append(get_headers["Authorization"])
    status, get_resp, body = call(f"{url}/alice/stor/hello.txt", headers=get_headers)
    assert (status, body) == (200, b"hello\n")

    missing_headers = signed(signer, "GET", "/alice/stor/missing")
    sent_authorizations.append(missing_headers["Authorization"])
    assert call(f"{url}/alice/stor/missing", headers=missing_headers)[0] == 404

    # anonymous, and a (bogus) pre-signed URL: its signature must not be logged either
    assert call(f"{url}/alice/stor/anon", "PUT", b"x")[0] == 403
    presigned = f"{url}/alice/stor/hello.txt?algorithm=ED25519-SHA512&expires=1&signature=SEKRIT"
    assert call(presigned)[0] == 403
    # the admin surface is not audited
    assert call(f"{url}/_fake/state", headers=ADMIN_HEADERS)[0] == 200

    verbose_cli.wait_for(5, '"audit": true')
    text = verbose_cli.stop()
    records = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    assert len(records) == 5, text

    for rec in records:
        assert rec["v"] == 0
        assert rec["level"] == 30
        assert rec["name"] == "fake-manta"
        assert rec["hostname"] == socket.gethostname()
        assert rec["pid"] == verbose_cli.proc.pid
        assert ISO_MS_Z.match(rec["time"]), rec["time"]
        assert rec["msg"] == f"handled: {rec['res']['statusCode']}"
        assert rec["audit"] is True
        assert rec["remoteAddress"] == "127.0.0.1"
        assert isinstance(rec["remotePort"], int)
        assert isinstance(rec["latency"], int) and rec["latency"] >= 0
        assert rec["req_id"] == rec["res"]["headers"]["x-request-id"]
        assert "authorization" not in rec["req"]["headers"]
        assert rec["req"]["httpVersion"] == "1.1"
        assert rec["req"]["owner"] == "alice"

    put, get, missing, anonymous, presigned_rec = records
    assert put["req"]["method"] == "PUT" and put["req"]["url"] == "/alice/stor/hello.txt"
    assert put["req"]["headers"]["x-request-id"] == "export-req-1"
    assert put["req_id"] == put_resp["x-request-id"]
    assert put["route"] == put["operation"] == "PutObject"
    assert put["req"]["caller"]["login"] == "alice"
    assert put["res"]["statusCode"] == 204
    assert put["objectId"] == put_resp["Etag"]
    assert put["dataSize"] == len(b"hello\n")
    assert "err" not in put

    assert get["route"] == "GetStorage"
    assert get["req_id"] == get_resp["x-request-id"]
    assert get["res"]["headers"]["content-length"] == "6"
    assert get["dataSize"] == 6

    assert missing["res"]["statusCode"] == 404
    assert missing["err"] == {"name": "ResourceNotFoundError", "code": "ResourceNotFound",
                              "message": "/alice/stor/missing was not found", "statusCode": 404}

    assert anonymous["req"]["caller"]["login"] is None
    assert anonymous["err"]["code"] == "AuthorizationFailed"
    assert anonymous["route"] == "PutObject"

    assert presigned_rec["req"]["url"] == (
        "/alice/stor/hello.txt?algorithm=ED25519-SHA512&expires=1&signature=REDACTED")

    # no credential in the log, in any form
    assert "SEKRIT" not in text
    assert "Signature keyId" not in text
    for authorization in sent_authorizations:
        signature = authorization.split('signature="')[1].rstrip('"')
        assert signature not in text


def test_text_format(pubkey: Path) -> None:
    server = CliServer("--no-auth", "--account", "bob", "-v", "--log-format", "text")
    try:
        assert call(f"{server.url}/bob/stor/d", "PUT", None,
                    {"Content-Type": DIR_CT, "x-request-id": "text-1"})[0] == 204
        assert call(f"{server.url}/bob/stor/d/nope")[0] == 404
        server.wait_for(2, "fake_manta.audit")
    finally:
        text = server.stop()
    put, missing = text.splitlines()
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO fake_manta\.audit "
                    r"\[[0-9a-f-]{36}\]: "
                    r"handled: 204 PUT /bob/stor/d \(PutDirectory, \d+ ms\) "
                    r"x-request-id=text-1 caller=bob$", put), put
    assert "handled: 404 GET /bob/stor/d/nope (GetStorage, " in missing
    assert missing.endswith("err=ResourceNotFound: /bob/stor/d/nope was not found")


def test_vv_adds_debug_records() -> None:
    server = CliServer("--no-auth", "--account", "bob", "-vv")
    try:
        assert call(f"{server.url}/_fake/faults", "POST",
                    b'{"method": "GET", "path": "flaky", "status": 503}', ADMIN_JSON)[0] == 201
        assert call(f"{server.url}/bob/stor/flaky", headers={"x-request-id": "vv-1"})[0] == 503
        server.wait_for(1, '"audit": true')
    finally:
        text = server.stop()
    records = [json.loads(line) for line in text.splitlines()]
    debug = [r for r in records if r["level"] == 20]
    assert {"request received", "admin handled: 201"} <= {r["msg"] for r in debug}
    (audit,) = [r for r in records if r.get("audit")]
    assert audit["req"]["headers"]["x-request-id"] == "vv-1"
    received = next(r for r in debug
                    if r["msg"] == "request received" and r["req_id"] == audit["req_id"])
    assert received["req"] == {"method": "GET", "url": "/bob/stor/flaky"}
    fault = next(r for r in debug if r["msg"].startswith("fault injected"))
    assert fault["component"] == "fake_manta.faults"
    assert fault["fault"]["status"] == 503
    admin = next(r for r in debug if r["msg"] == "admin handled: 201")
    assert "audit" not in admin
    assert audit["err"]["code"] == "ServiceUnavailable"
    assert audit["res"]["statusCode"] == 503


def test_without_v_nothing_is_logged_but_requests_are_kept() -> None:
    server = CliServer("--no-auth", "--account", "bob")
    try:
        assert call(f"{server.url}/bob/stor", headers={"x-request-id": "quiet-1"})[0] == 200
        status, _, body = call(f"{server.url}/_fake/requests", headers=ADMIN_HEADERS)
        assert status == 200
        (record,) = json.loads(body)
        assert record["req"]["headers"]["x-request-id"] == "quiet-1"
        assert record["route"] == "GetStorage"
        assert ISO_MS_Z.match(record["time"])
        assert call(f"{server.url}/_fake/requests", "DELETE", headers=ADMIN_HEADERS)[0] == 204
        assert json.loads(call(f"{server.url}/_fake/requests", headers=ADMIN_HEADERS)[2]) == []
    finally:
        text = server.stop()
    assert text == ""


# --- in process -------------------------------------------------------------------------------
async def test_embedded_server_keeps_the_latest_records() -> None:
    async with FakeMantaServer(port=0, no_auth=True, keep_requests=3) as server:
        server.add_account("bob")
        async with aiohttp.ClientSession() as http:
            for i in range(5):
                async with http.put(f"{server.url}/bob/stor/o{i}", data=b"x" * i,
                                    headers={"x-request-id": f"r-{i}"}) as resp:
                    assert resp.status == 204
            async with http.get(f"{server.url}/_fake/state", headers=ADMIN_HEADERS) as resp:
                assert resp.status == 200
        records = server.requests
        assert [r["req"]["headers"]["x-request-id"] for r in records] == ["r-2", "r-3", "r-4"]
        assert [r["dataSize"] for r in records] == [2, 3, 4]
        assert all(r["audit"] and r["route"] == "PutObject" for r in records)
        records.clear()  # a snapshot: the server's list is untouched
        assert len(server.requests) == 3
        await server.reset()
        assert server.requests == []


async def test_embedded_server_logs_only_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    """``log_requests=True`` sends the records to the ``fake_manta.audit`` logger; by default
    an embedding host's logs get none (the in-memory list has them either way)."""
    caplog.set_level(logging.DEBUG, logger="fake_manta")
    for log_requests in (False, True):
        async with FakeMantaServer(port=0, no_auth=True, log_requests=log_requests) as server:
            server.add_account("bob")
            async with aiohttp.ClientSession() as http, http.get(
                    f"{server.url}/bob/stor/nope", headers={"x-request-id": "cap-1"}) as resp:
                assert resp.status == 404
            assert len(server.requests) == 1
        if not log_requests:
            assert [r for r in caplog.records if r.name.startswith("fake_manta")] == []
    (record,) = [r for r in caplog.records if r.name == "fake_manta.audit"]
    assert record.getMessage() == "handled: 404"
    assert record.req["headers"]["x-request-id"] == "cap-1"  # type: ignore[attr-defined]
    assert record.err["code"] == "ResourceNotFound"  # type: ignore[attr-defined]


def test_threaded_server_requests_are_readable_from_another_thread() -> None:
    with ThreadedFakeManta(no_auth=True) as t:
        t.add_account("bob")
        assert call(f"{t.url}/bob/stor", headers={"x-request-id": "thr-1"})[0] == 200
        deadline = time.monotonic() + 5
        while not t.requests:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        (record,) = t.requests
        assert record["req"]["headers"]["x-request-id"] == "thr-1"
        assert record["req_id"] != "thr-1"  # muskie answers with an id of its own
        assert len(record["req_id"]) == 36


async def test_keep_requests_zero_keeps_none() -> None:
    async with FakeMantaServer(port=0, no_auth=True, keep_requests=0) as server:
        server.add_account("bob")
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/bob/stor") as resp:
            assert resp.status == 200
        assert server.requests == []


# --- pieces -----------------------------------------------------------------------------------
UPLOAD = "2a1b3c4d-0000-4000-8000-000000000001"  # prefix length 1: /uploads/2/<id>


@pytest.mark.parametrize(("method", "path", "content_type", "name"), [
    ("GET", "/al", None, "GetRootDir"),
    ("PUT", "/al/stor/d", DIR_CT, "PutDirectory"),
    ("PUT", "/al/stor/l", "application/json; type=link", "PutLink"),
    ("PUT", "/al/public/o", "text/plain", "PutPublicObject"),
    ("HEAD", "/al/reports/o", None, "HeadReportsStorage"),
    ("DELETE", "/al/stor/o", None, "DeleteStorage"),
    ("OPTIONS", "/al/public/o", None, "OptionsPublicStorage"),
    ("POST", "/al/uploads", None, "CreateUpload"),
    ("GET", "/al/uploads/2", None, "GetUploadsStorage"),
    ("PUT", f"/al/uploads/2/{UPLOAD}/0", None, "UploadPart"),
    ("GET", f"/al/uploads/2/{UPLOAD}/state", None, "GetUploadState"),
    ("POST", f"/al/uploads/2/{UPLOAD}/commit", None, "CommitUpload"),
    ("POST", f"/al/uploads/2/{UPLOAD}/abort", None, "AbortUpload"),
    ("DELETE", f"/al/uploads/2/{UPLOAD}", None, "DeleteUploadDir"),
    ("GET", f"/al/uploads/{UPLOAD}", None, "GetUploadRedirect"),
    ("PUT", f"/al/uploads/{UPLOAD}/3", None, "PutUploadPartRedirect"),
    ("GET", "/al/jobs", None, None),
])
def test_route_names_are_muskies(method: str, path: str, content_type: str | None,
                                 name: str | None) -> None:
    assert route_name(method, path, content_type) == name


def test_bunyan_levels() -> None:
    assert [bunyan_level(n) for n in (5, 10, 20, 30, 40, 50)] == [10, 20, 30, 40, 50, 60]


def test_an_exception_becomes_bunyans_err() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("fake_manta", logging.ERROR, __file__, 1, "failed %s",
                                   ("x",), sys.exc_info())
    record.req_id = "e-1"
    out: dict[str, Any] = json.loads(BunyanFormatter().format(record))
    assert list(out)[:5] == ["name", "hostname", "pid", "component", "level"]
    assert list(out)[-3:] == ["msg", "time", "v"]
    assert out["level"] == 50 and out["msg"] == "failed x" and out["req_id"] == "e-1"
    assert out["err"]["name"] == "ValueError" and out["err"]["message"] == "boom"
    assert "Traceback" in out["err"]["stack"]
    assert "exc_info" not in out and "message" not in out


def test_redact_url() -> None:
    assert redact_url("/a/stor/o?algorithm=X&signature=abc%2B&expires=1") == (
        "/a/stor/o?algorithm=X&signature=REDACTED&expires=1")
    assert redact_url("/a/stor/o?Signature=abc") == "/a/stor/o?Signature=REDACTED"
    assert redact_url("/a/stor/signature=x") == "/a/stor/signature=x"
