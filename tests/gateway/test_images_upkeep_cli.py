"""``images migrate``, ``verify``, ``sweep`` and ``delete`` through the real CLI entry point,
on the object-store catalog in a fake Manta (a background thread on loopback)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fake_manta import ThreadedFakeManta
from gateway.cli.main import main
from gateway.settings import load_settings
from gateway.storage import StorageTarget
from plugins.storage.manta import MantaTargetFactory
from tests.support.storage_targets import write_operator_key

T = TypeVar("T")
PREFIX = "/operator/stor/imgapi"
UUIDS = ("0b5e7b0c-1111-4222-8333-944444444444", "1c6f8c1d-2222-4333-9444-a55555555555")


@pytest.fixture
def manta(tmp_path: Path) -> Iterator[tuple[ThreadedFakeManta, Path]]:
    key_file, public_line = write_operator_key(tmp_path / "keys")
    server = ThreadedFakeManta(host="127.0.0.1", port=0)
    server.start()
    server.add_account("operator", public_keys=[public_line], operator=True)
    try:
        yield server, key_file
    finally:
        server.stop()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write_image(directory: Path, uuid: str, data: bytes) -> tuple[Path, Path]:
    manifest = {
        "v": 2,
        "uuid": uuid,
        "owner": "00000000-0000-4000-8000-000000000000",
        "name": f"img-{uuid[:4]}",
        "version": "1.0.0",
        "type": "zone-dataset",
        "os": "smartos",
        "files": [
            {"sha1": hashlib.sha1(data).hexdigest(), "size": len(data), "compression": "none"}
        ],
    }
    path = directory / f"{uuid}.json"
    path.write_text(json.dumps(manifest))
    file = directory / f"{uuid}.file"
    file.write_bytes(data)
    return path, file


@pytest.fixture
def setup(
    tmp_path: Path,
    manta: tuple[ThreadedFakeManta, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """Two images in the embedded catalog, and a config for the object-store one."""
    monkeypatch.setenv("CLOUDAPI_GATEWAY_DISABLED_PLUGINS", "export,s3")
    server, key_file = manta
    data_dir = tmp_path / "data"
    assert run(capsys, "accounts", "add", "alice", "--data-dir", str(data_dir))[0] == 0
    for n, uuid in enumerate(UUIDS):
        manifest, file = write_image(tmp_path, uuid, bytes([n]) * (300_000 + n))
        code, _, err = run(
            capsys, "images", "import", "--owner", "alice", str(manifest), str(file),
            "--data-dir", str(data_dir),
        )
        assert code == 0, err
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'data_dir = "data"\n\n[storage]\nkind = "manta"\nurl = "{server.url}"\n'
        f'user = "operator"\nkey_file = "{key_file}"\n'
        'public_url = "https://manta.example.com"\nretries = 0\n\n'
        f'[catalog]\nkind = "objectstore"\nprefix = "{PREFIX}"\n'
    )
    return {"config": str(config), "data_dir": data_dir, "server": server}


def on_target(setup: dict[str, Any], job: Callable[[StorageTarget], Awaitable[T]]) -> T:
    """Run ``job`` on a Manta target of our own (not the catalog's), to look or to tamper."""

    async def run_job() -> T:
        settings = load_settings(setup["config"])
        target = MantaTargetFactory().create(
            {k: v for k, v in settings.storage.items() if k != "kind"}, settings
        )
        await target.open()
        try:
            return await job(target)
        finally:
            await target.close()

    return asyncio.run(run_job())


def stored(setup: dict[str, Any]) -> list[str]:
    """The objects under the prefix."""

    async def listing(target: StorageTarget) -> list[str]:
        if await target.stat(PREFIX) is None:
            return []
        found = []
        for directory in [d async for d in await target.list_directory(PREFIX)]:
            found += [o.path async for o in await target.list_directory(directory.path)]
        return sorted(found)

    return on_target(setup, listing)


def test_migrate_copies_each_image_once_and_can_run_again(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "images", "migrate", "-c", setup["config"])
    assert code == 0, err
    assert "2 copied, 0 already there" in out
    objects = stored(setup)
    assert [o.split("/")[4] for o in objects] == sorted(UUIDS)
    code, out, err = run(capsys, "images", "migrate", "-c", setup["config"])
    assert code == 0, err
    assert "0 copied, 2 already there" in out
    assert stored(setup) == objects  # nothing uploaded twice

    code, out, _ = run(capsys, "images", "list", "-j", "-c", setup["config"])
    assert code == 0
    assert sorted(m["uuid"] for m in json.loads(out)) == sorted(UUIDS)
    code, out, err = run(capsys, "images", "verify", "--read", "-c", setup["config"])
    assert code == 0, err
    assert "every image file matches its record" in out


def test_migrate_refuses_when_the_destination_is_the_embedded_catalog(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "images", "migrate", "--data-dir", str(setup["data_dir"]))
    assert code == 1
    assert "the configured catalog is the embedded one" in err
    code, _, err = run(capsys, "images", "migrate", "-c", setup["config"], "--from", "/nowhere")
    assert code == 1
    assert "holds no embedded catalog" in err


def test_verify_reports_a_file_removed_behind_the_catalogs_back(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "images", "migrate", "-c", setup["config"])[0] == 0
    victim = stored(setup)[0]
    on_target(setup, lambda target: target.delete_object(victim))
    code, out, err = run(capsys, "images", "verify", "-j", "-c", setup["config"])
    assert code == 1
    problems = [json.loads(line) for line in out.splitlines()]
    assert [(p["uuid"], p["problem"].split(":")[0]) for p in problems] == [
        (victim.split("/")[4], "missing")
    ]
    assert "1 image file(s) do not match" in err


def test_sweep_removes_orphans_and_delete_removes_the_file(
    setup: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "images", "migrate", "-c", setup["config"])[0] == 0
    before = stored(setup)
    code, out, _ = run(capsys, "images", "sweep", "-c", setup["config"], "--older-than", "0")
    assert code == 0
    assert "0 orphaned object(s) removed" in out
    assert stored(setup) == before
    orphan = f"{PREFIX}/{UUIDS[0]}/file0.left-by-a-crash"

    async def body() -> AsyncIterator[bytes]:
        yield b"orphan"

    on_target(
        setup,
        lambda target: target.put_object(
            orphan, body, size=6, content_md5=None, content_type="application/octet-stream"
        ),
    )
    code, out, _ = run(capsys, "images", "sweep", "-c", setup["config"], "-n", "--older-than", "0")
    assert out.splitlines()[0] == f"would remove {orphan}"
    assert orphan in stored(setup)
    code, out, _ = run(capsys, "images", "sweep", "-c", setup["config"], "--older-than", "0")
    assert code == 0 and f"removed {orphan}" in out
    assert stored(setup) == before
    code, out, err = run(capsys, "images", "delete", UUIDS[0], "-c", setup["config"])
    assert code == 0, err
    assert [o.split("/")[4] for o in stored(setup)] == [UUIDS[1]]
