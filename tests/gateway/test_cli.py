"""The ``cloudapi-gateway`` command line (argument parsing, plugin listing, serve's settings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.cli.main import build_parser, main, settings_from_args


def test_plugins_lists_what_each_provides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins", "--data-dir", str(tmp_path), "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["export"]["provides"] == {"actions": ["export"]}
    assert rows["embedded-catalog"]["provides"] == {"catalogs": ["embedded"]}
    assert rows["export"]["module"] == "plugins.actions.export"


def test_plugins_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "export" in out
    assert "actions: export" in out
    assert "catalogs: embedded" in out


def test_disabled_plugins_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDAPI_GATEWAY_DISABLED_PLUGINS", "s3")
    assert main(["plugins", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "disabled: s3" in out
    assert "storage: s3" not in out


def test_disabled_plugin_is_not_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDAPI_GATEWAY_DISABLED_PLUGINS", "export")
    assert main(["plugins", "--json"]) == 0
    names = {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert "export" not in names
    assert "embedded-catalog" in names


def test_serve_flags_override_config(tmp_path: Path) -> None:
    config = tmp_path / "g.toml"
    config.write_text('port = 9001\nhost = "127.0.0.2"\n')
    args = build_parser().parse_args(
        ["serve", "--config", str(config), "--port", "9002", "--data-dir", str(tmp_path / "d")]
    )
    settings = settings_from_args(args)
    assert settings.port == 9002
    assert settings.host == "127.0.0.2"
    assert settings.data_dir == tmp_path / "d"


def test_bad_config_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "g.toml"
    config.write_text("port = 99999\n")
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cloudapi-gateway: error:")
    assert "port must be an integer from 0 to 65535" in err


def test_unknown_catalog_kind_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "g.toml"
    config.write_text('[catalog]\nkind = "imgapi"\n')
    assert main(["serve", "--config", str(config), "--data-dir", str(tmp_path)]) == 2
    assert "'imgapi' is unknown; known kinds: embedded" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().out


def test_serve_answers_ping_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    """The real ``cloudapi-gateway serve`` process: listens, answers, exits 0 on SIGINT."""
    import signal
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "data"),
            "--log-level",
            "info",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # wait for the "Running on" line, however long start takes
            if "Running on" in line:
                break
        else:
            raise AssertionError(f"server exited early with {proc.wait()}")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/--ping") as resp:
            assert resp.status == 200
            assert resp.headers["Server"].startswith("cloudapi-gateway/")
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait()
    assert code == 0
    assert (tmp_path / "data" / "accounts.sqlite").exists()


def test_every_command_module_registers_its_subcommands() -> None:
    """Every command module adds its commands (tests/lint/test_layout.py keeps them plain)."""
    help_text = build_parser().format_help()
    for command in ("serve", "plugins", "accounts", "keys", "images", "export", "dev"):
        assert command in help_text
