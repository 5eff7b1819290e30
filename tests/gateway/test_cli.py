"""The ``cloudapi-gateway`` command line (argument parsing, plugin listing, serve's settings)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
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


# --- start-up, flags and read-only commands (issue 12, "The command line") ------------------------

#: Heavy imports the fast commands must not pay for (jsonschema's format checker alone builds a
#: grammar for most of a second).
HEAVY = ("jsonschema", "aiohttp", "asyncssh")


@pytest.mark.parametrize(
    "argv",
    [
        ["--version"],
        ["--help"],
        ["export", "--help"],
        ["export", "--dry-run", "demo", "/dev/stor/x"],
    ],
    ids=["version", "help", "export-help", "export-dry-run"],
)
def test_fast_commands_import_neither_jsonschema_nor_aiohttp(
    argv: list[str], tmp_path: Path
) -> None:
    """Asserted on ``sys.modules``, not on a clock: ``import gateway.cli``, run the command, list
    what got imported. In a fresh interpreter, so that this process's imports do not count."""
    import os
    import subprocess
    import sys

    from gateway.cli.dev import ensure_key

    key = ensure_key(tmp_path / "id_rsa")
    code = (
        "import sys, gateway.cli\n"
        "from gateway.cli.main import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SDC_", "TRITON_", "CLOUDAPI_GATEWAY_", "SSH_AUTH_SOCK"))
    }
    env.update(SDC_URL="http://127.0.0.1:9", SDC_ACCOUNT="dev", SDC_KEY_PATH=str(key.path))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    (line,) = [ln for ln in result.stdout.splitlines() if ln.startswith("HEAVY=")]
    assert line == "HEAVY=", f"{argv} imported {line[6:]}"


@pytest.mark.parametrize(
    "argv",
    [
        ["accounts", "list"],
        ["accounts", "list", "-j"],
        ["keys", "list", "dev"],
        ["images", "list"],
        ["images", "get", "0b5e7b0c-1111-4222-8333-944444444444"],
    ],
)
def test_read_only_commands_never_create_a_data_dir(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped --data-dir is a one-line error and a non-zero exit, and nothing is created."""
    missing = tmp_path / "typo"
    assert main([*argv, "--data-dir", str(missing)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"cloudapi-gateway: error: data dir {missing} does not exist "
        "(check --data-dir, or data_dir in the --config file)\n"
    )
    assert not missing.exists()

    # Through a config file's data_dir, taken from the file's directory, the same.
    config = tmp_path / "gateway.toml"
    config.write_text('data_dir = "typo-too"\n')
    assert main([*argv, "-c", str(config)]) == 1
    assert f"data dir {tmp_path / 'typo-too'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "typo-too").exists()


def test_read_only_commands_create_nothing_in_an_empty_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["accounts", "list", "--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split()[:2] == ["LOGIN", "UUID"]
    assert main(["keys", "list", "dev", "--data-dir", str(tmp_path)]) == 1
    assert "no account with login 'dev'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def _options(parser: argparse.ArgumentParser, path: str = "") -> Iterator[tuple[str, list[str]]]:
    """(command path, option strings) of every option of every (sub)command."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}".strip())
        elif action.option_strings:
            yield path, action.option_strings


def test_the_same_short_and_long_flags_everywhere() -> None:
    """``-j/--json`` and ``-c/--config`` wherever a command has the long form."""
    seen = {"--json": 0, "--config": 0}
    for command, strings in _options(build_parser()):
        for long, short in (("--json", "-j"), ("--config", "-c")):
            if long in strings:
                seen[long] += 1
                assert short in strings, f"'{command}' has {long} without {short}"
    assert seen["--json"] >= 5 and seen["--config"] >= 10, seen


@pytest.mark.parametrize(
    ("argv", "shown"),
    [(["serve", "--help"], ["8080", "127.0.0.1"]), (["dev", "--help"], ["8080", "8081"])],
)
def test_help_shows_the_defaults(
    argv: list[str], shown: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(argv)
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for value in shown:
        assert f"default: {value}" in text or f"default {value}" in text, (value, text)
