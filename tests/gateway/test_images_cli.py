"""``cloudapi-gateway images ...`` run in-process through the real CLI entry point."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.actions import Account
from gateway.cli.main import main
from gateway.server.accounts import AccountStore

UUID = "0b5e7b0c-1111-4222-8333-944444444444"
DATA = b"\x1f\x8b" + bytes(range(256)) * 4100  # a little over 1 MiB: two chunks


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    # Only the catalog plugin is needed; the others are other people's work in progress.
    monkeypatch.setenv("CLOUDAPI_GATEWAY_DISABLED_PLUGINS", "export,manta,s3")
    async def add_alice() -> Account:
        store = AccountStore(tmp_path / "accounts.sqlite")
        try:
            return await store.add_account("alice")
        finally:
            await store.close()

    alice = asyncio.run(add_alice())
    image = tmp_path / "base.zfs.gz"
    image.write_bytes(DATA)
    return {"dir": tmp_path, "alice": alice.uuid, "file": image}


def write_manifest(path: Path, **changes: Any) -> Path:
    m = {
        "v": 2,
        "uuid": UUID,
        "owner": "00000000-0000-4000-8000-000000000000",
        "name": "base",
        "version": "1.0.0",
        "type": "zone-dataset",
        "os": "smartos",
        "public": True,
        "files": [
            {"sha1": hashlib.sha1(DATA).hexdigest(), "size": len(DATA), "compression": "gzip"}
        ],
    }
    m.update(changes)
    out = path / "base.imgmanifest"
    out.write_text(json.dumps(m))
    return out


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_import_list_get_delete(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    d = str(env["dir"])
    mf = write_manifest(env["dir"])
    code, out, err = run(
        capsys, "images", "import", "--owner", "alice", str(mf), str(env["file"]), "--data-dir", d
    )
    assert code == 0, err
    imported = json.loads(out)
    assert imported["owner"] == env["alice"]  # the login's uuid replaces the manifest's
    assert imported["state"] == "active"
    assert (env["dir"] / "images" / UUID / "file0").read_bytes() == DATA

    code, out, _ = run(capsys, "images", "list", "--data-dir", d)
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["UUID", "NAME", "VERSION", "TYPE", "STATE", "OWNER", "PUBLISHED"]
    assert row.split()[:2] == [UUID, "base"]
    assert row.split()[5] == "alice"  # the owner's login, not its uuid

    code, out, _ = run(capsys, "images", "list", "-j", "-c", str(env["dir"] / "none.toml"))
    assert code == 1  # -c is --config: a missing file is refused

    code, out, _ = run(capsys, "images", "get", UUID, "--data-dir", d)
    assert code == 0 and json.loads(out) == imported

    code, out, _ = run(capsys, "images", "delete", UUID, "--data-dir", d)
    assert code == 0 and UUID in out
    assert not (env["dir"] / "images" / UUID).exists()
    code, _, err = run(capsys, "images", "get", UUID, "--data-dir", d)
    assert code == 1 and "not found" in err


def test_import_sha1_mismatch_leaves_nothing(
    env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    d = str(env["dir"])
    mf = write_manifest(
        env["dir"], files=[{"sha1": "0" * 40, "size": len(DATA), "compression": "gzip"}]
    )
    code, _, err = run(
        capsys, "images", "import", "--owner", "alice", str(mf), str(env["file"]), "--data-dir", d
    )
    assert code == 1 and "sha1" in err
    code, out, _ = run(capsys, "images", "list", "--json", "--data-dir", d)
    assert code == 0 and json.loads(out) == []
    assert [
        p.name for p in (env["dir"] / "images").iterdir() if not p.name.startswith("catalog")
    ] == []


def test_import_refusals(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    d, f = str(env["dir"]), str(env["file"])
    bad = write_manifest(env["dir"], name="bad;name", bogus=True)
    code, _, err = run(capsys, "images", "import", "--owner", "alice", str(bad), f, "--data-dir", d)
    assert code == 1
    assert "name: Invalid" in err and "bogus: Invalid" in err

    good = write_manifest(env["dir"])
    code, _, err = run(
        capsys, "images", "import", "--owner", "nobody", str(good), f, "--data-dir", d
    )
    assert code == 1 and "nobody" in err

    code, _, err = run(
        capsys, "images", "import", "--owner", "alice", str(good), d + "/missing", "--data-dir", d
    )
    assert code == 1 and "missing" in err

    (env["dir"] / "junk.json").write_text("{not json")
    code, _, err = run(
        capsys, "images", "import", "--owner", "alice", d + "/junk.json", f, "--data-dir", d
    )
    assert code == 1 and "not JSON" in err


def test_config_file_selects_catalog_path(
    env: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    d: Path = env["dir"]
    elsewhere = d / "elsewhere"
    config = d / "gateway.toml"
    config.write_text(f'data_dir = "{d}"\n[catalog]\nkind = "embedded"\npath = "{elsewhere}"\n')
    mf = write_manifest(d)
    code, _, err = run(
        capsys,
        "images",
        "import",
        "--owner",
        "alice",
        str(mf),
        str(env["file"]),
        "--config",
        str(config),
    )
    assert code == 0, err
    assert (elsewhere / UUID / "file0").exists()
    config.write_text(f'data_dir = "{d}"\n[catalog]\nkind = "embedded"\ncolour = "red"\n')
    code, _, err = run(capsys, "images", "list", "--config", str(config))
    assert code == 1 and "colour" in err
