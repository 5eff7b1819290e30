"""``cloudapi-gateway dev``: the newcomer's first command, run as a newcomer runs it."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
from pathlib import Path

import pytest

FINGERPRINT = r"(?:[0-9a-f]{2}:){15}[0-9a-f]{2}"


def dev_command() -> list[str]:
    """The installed console script, as the README runs it."""
    exe = shutil.which("cloudapi-gateway")
    assert exe, "cloudapi-gateway is not installed (python3 -m pip install -e .)"
    return [exe, "dev"]


def exports(text: str) -> dict[str, str]:
    """``export NAME=value`` lines as a mapping, values unquoted as the shell would."""
    out = {}
    for line in text.splitlines():
        if line.startswith("export "):
            (assignment,) = shlex.split(line[len("export ") :])
            name, _, value = assignment.partition("=")
            out[name] = value
    return out


def run_smoke(data_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *dev_command(),
            *extra,
            "--smoke",
            "--data-dir",
            str(data_dir),
            "--port",
            "0",
            "--manta-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_smoke_exports_and_verifies_then_reuses_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "dev data"  # a space: paths are quoted in what is printed
    first = run_smoke(data_dir)
    assert first.returncode == 0, first.stderr + first.stdout
    env = exports(first.stdout)
    assert set(env) >= {
        "SDC_URL",
        "SDC_ACCOUNT",
        "SDC_KEY_ID",
        "SDC_KEY_PATH",
        "MANTA_URL",
        "MANTA_USER",
        "MANTA_KEY_ID",
    }
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", env["SDC_URL"])
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", env["MANTA_URL"])
    assert env["SDC_URL"] != env["MANTA_URL"]
    assert env["SDC_ACCOUNT"] == env["MANTA_USER"] == "dev"
    assert re.fullmatch(FINGERPRINT, env["SDC_KEY_ID"])
    assert env["MANTA_KEY_ID"] == env["SDC_KEY_ID"]
    assert "cloudapi-gateway export demo@1.0.0 /dev/stor/demo" in first.stdout
    assert "ssh-add" in first.stdout
    assert first.stdout.rstrip().endswith("# smoke: OK")
    answer = json.loads(first.stdout.split("ExportImage said:\n", 1)[1].rsplit("# smoke", 1)[0])
    assert list(answer) == ["manta_url", "image_path", "manifest_path"]
    assert answer["image_path"] == "/dev/stor/demo.zfs.gz"
    assert answer["manifest_path"] == "/dev/stor/demo.imgmanifest"
    assert answer["manta_url"] == env["MANTA_URL"]

    key_path = data_dir / "keys" / "dev_id_rsa"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "keys" / "operator_id_rsa").stat().st_mode) == 0o600
    demo = data_dir / "demo" / "demo-1.0.0.zfs.gz"
    assert 1024 * 1024 < demo.stat().st_size < 16 * 1024 * 1024
    assert demo.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    # The fake Manta is on disk under the data dir: the exported file is there too.
    assert any(
        p.is_file() and p.stat().st_size == demo.stat().st_size
        for p in (data_dir / "manta").rglob("*")
    )

    second = run_smoke(data_dir)
    assert second.returncode == 0, second.stderr + second.stdout
    again = exports(second.stdout)
    assert again["SDC_KEY_ID"] == env["SDC_KEY_ID"]
    image_uuid = re.search(r"uuid ([0-9a-f-]{36})", first.stdout)
    assert image_uuid and image_uuid.group(1) in second.stdout


def test_smoke_on_the_object_store_catalog_exports_by_snaplink(tmp_path: Path) -> None:
    """``--catalog objectstore``: the demo image's file lives in the fake Manta, and the
    export is a SnapLink of it (the fake Manta's on-disk store keeps one copy of the bytes)."""
    data_dir = tmp_path / "dev"
    result = run_smoke(data_dir, "--catalog", "objectstore")
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.rstrip().endswith("# smoke: OK")
    demo_size = (data_dir / "demo" / "demo-1.0.0.zfs.gz").stat().st_size
    stored = [p for p in (data_dir / "manta").rglob("*") if p.is_file()]
    # One copy of the demo's bytes on disk (one inode): the catalog's, linked to by the export.
    copies = {p.stat().st_ino for p in stored if p.stat().st_size == demo_size}
    assert len(copies) == 1
    assert not (data_dir / "gateway" / "images").exists()  # nothing on the gateway's disk


@pytest.mark.parametrize("option", ["--port", "--manta-port"])
def test_smoke_fails_clearly_when_the_port_is_taken(tmp_path: Path, option: str) -> None:
    """The gateway's port or the fake Manta's: one line that says which and what to do."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports = {"--port": "0", "--manta-port": "0", option: str(port)}
        proc = subprocess.run(
            [
                *dev_command(),
                "--smoke",
                "--data-dir",
                str(tmp_path),
                *(part for pair in ports.items() for part in pair),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert f"({option} chooses another port)" in proc.stderr
    assert "Traceback" not in proc.stderr


async def shell(script: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        script,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_dev_serves_until_sigint_then_stops_cleanly(tmp_path: Path) -> None:
    """Without --smoke it serves; the printed commands work as printed; Ctrl-C stops it."""
    proc = await asyncio.create_subprocess_exec(
        *dev_command(),
        "--data-dir",
        str(tmp_path),
        "--port",
        "0",
        "--manta-port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        seen = ""
        while "# Serving" not in seen:
            line = await asyncio.wait_for(proc.stdout.readline(), 120)
            assert line, f"dev mode exited early: {seen}"
            seen += line.decode()
        env = exports(seen)
        child_env = {**os.environ, **env, "HOME": str(tmp_path)}
        # The printed command, run as printed.
        (command,) = [ln for ln in seen.splitlines() if ln.startswith("cloudapi-gateway export ")]
        code, out, err = await shell(command, child_env)
        assert code == 0, err
        assert out.splitlines() == [
            "Exporting image demo@1.0.0 to /dev/stor/demo",
            f"    Manta URL: {env['MANTA_URL']}",
            "Manifest path: /dev/stor/demo.imgmanifest",
            "   Image path: /dev/stor/demo.zfs.gz",
        ]
        # The printed curl + openssl recipe, run as printed (comment marks removed).
        if shutil.which("openssl") and shutil.which("curl"):
            recipe = seen.split("signing the Date header with openssl:\n", 1)[1]
            recipe = recipe.split("# Then read it back", 1)[0]
            script = "\n".join(line[len("#   ") :] for line in recipe.splitlines())
            code, out, err = await shell(script, child_env)
            assert code == 0, err
            assert json.loads(out) == {
                "manta_url": env["MANTA_URL"],
                "image_path": "/dev/stor/demo.zfs.gz",
                "manifest_path": "/dev/stor/demo.imgmanifest",
            }
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        rest, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "Stopping" in rest.decode()
    assert "Traceback" not in err.decode()


async def test_a_lost_key_is_replaced_and_the_new_one_works(tmp_path: Path) -> None:
    """Deleting the keys (not the rest) of a data dir gives a fresh key known to both servers."""
    from gateway.cli.dev import running, smoke

    data = tmp_path / "data"
    async with running(data, port=0, manta_port=0) as (env, _app):
        first = env.dev_key.fingerprint
        image_uuid = env.image.uuid
    shutil.rmtree(data / "keys")
    async with running(data, port=0, manta_port=0) as (env, _app):
        assert env.dev_key.fingerprint != first
        assert env.image.uuid == image_uuid
        answer = await smoke(env)
    assert answer["image_path"] == "/dev/stor/demo.zfs.gz"
