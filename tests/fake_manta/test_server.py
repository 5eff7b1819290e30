"""Embedding API, admin surface and CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from fake_manta import ADMIN_HEADERS, FakeMantaServer, ThreadedFakeManta
from fake_manta.cli import banner, build_parser, configure


def ssh_public_key() -> str:
    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH,
                            serialization.PublicFormat.OpenSSH).decode()


def test_threaded_server_lifecycle() -> None:
    t = ThreadedFakeManta(no_auth=True)
    t.start()
    try:
        assert t.url.startswith("http://127.0.0.1:")
        fps = t.add_account("carol", [ssh_public_key()], operator=True)
        assert len(fps) == 1 and fps[0].count(":") == 15
        assert t.registry.get("carol") is not None
        req = urllib.request.Request(f"{t.url}/carol/stor/x", data=b"abc", method="PUT")
        with urllib.request.urlopen(req) as r:
            assert r.status == 204
        with urllib.request.urlopen(f"{t.url}/carol/stor/x") as r:
            assert r.read() == b"abc"
        t.reset()
        try:
            urllib.request.urlopen(f"{t.url}/carol/stor/x")
            raise AssertionError("object survived reset")
        except urllib.error.HTTPError as err:
            assert err.code == 404
        assert t.registry.get("carol") is not None  # accounts survive reset
    finally:
        t.stop()


async def test_admin_surface(manta) -> None:
    key = ssh_public_key()
    async with manta.session.post(f"{manta.url}/_fake/accounts", headers=ADMIN_HEADERS, json={
            "login": "dave", "keys": [key], "operator": True}) as r:
        assert r.status == 201
        created = await r.json()
        assert created["login"] == "dave" and len(created["keys"]) == 1
    async with manta.session.post(f"{manta.url}/_fake/accounts", headers=ADMIN_HEADERS,
                                  json={"login": "_x"}) as r:
        assert r.status == 400
        assert (await r.json(content_type=None))["code"] == "BadRequest"
    await manta.put(f"{manta.stor}/x", b"abc")
    async with manta.session.get(f"{manta.url}/_fake/state", headers=ADMIN_HEADERS) as r:
        state = await r.json()
    assert {"login": "dave", "operator": True, "keys": created["keys"],
            "users": {}} in state["accounts"]
    assert state["objects"] == 1
    assert state["backend"] in ("memory", "disk")
    async with manta.session.post(f"{manta.url}/_fake/reset", json={},
                                  headers=ADMIN_HEADERS) as r:
        assert r.status == 204
    async with manta.session.get(f"{manta.url}/_fake/state", headers=ADMIN_HEADERS) as r:
        state = await r.json()
    assert state["objects"] == 0
    assert any(a["login"] == "dave" for a in state["accounts"])


async def test_admin_is_not_subject_to_auth() -> None:
    async with FakeMantaServer() as srv, aiohttp.ClientSession() as s:
        async with s.get(f"{srv.url}/_fake/state", headers=ADMIN_HEADERS) as r:
            assert r.status == 200
            assert (await r.json())["noAuth"] is False


def test_cli_configure_and_banner(tmp_path: Path) -> None:
    pub = tmp_path / "id.pub"
    pub.write_text(ssh_public_key() + "\n")
    args = build_parser().parse_args(
        ["--port", "0", "--account", f"alice={pub}", "--operator", "ops", "--snaplinks", "v2"])
    server = FakeMantaServer(port=0, snaplinks=args.snaplinks)
    fps = configure(server, args)
    assert list(fps) == ["alice", "ops"]
    assert server.registry.get("ops").operator  # type: ignore[union-attr]
    server._runner = object()  # type: ignore[assignment]  # only .url is rendered
    text = banner(server, fps)
    assert "MANTA_URL=http://127.0.0.1:0" in text
    assert "MANTA_USER=alice" in text
    assert f"MANTA_KEY_ID={fps['alice'][0]}" in text


def test_python_dash_m_serves(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fake_manta", "--port", "0", "--no-auth", "--account", "erin",
         "--data-dir", str(tmp_path / "d")],
        stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).resolve().parents[2]))
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in first
        url = first.split("listening on ")[1].split()[0]
        with urllib.request.urlopen(f"{url}/erin/stor") as r:
            assert r.status == 200
            assert r.headers["Server"] == "Manta/2"
        admin = urllib.request.Request(f"{url}/_fake/state", headers=ADMIN_HEADERS)
        with urllib.request.urlopen(admin) as r:
            assert json.load(r)["backend"] == "disk"
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
