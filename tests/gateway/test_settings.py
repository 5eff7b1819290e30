"""Settings from TOML, environment and flags, validated with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import Settings, SettingsError, load_settings

TOML = """
host = "0.0.0.0"
port = 9000
data_dir = "state"
datacenter_name = "us-test-1"
disabled_plugins = ["s3"]
max_body_size = 2048

[storage]
kind = "manta"
url = "http://127.0.0.1:1"

[catalog]
kind = "embedded"
path = "/srv/images"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_defaults_without_file_or_env() -> None:
    assert load_settings(env={}) == Settings()


def test_toml_file(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, TOML), env={})
    assert settings.host == "0.0.0.0"
    assert settings.port == 9000
    assert settings.data_dir == tmp_path / "state"  # relative to the file
    assert settings.accounts_db == tmp_path / "state" / "accounts.sqlite"
    assert settings.datacenter_name == "us-test-1"
    assert settings.disabled_plugins == ("s3",)
    assert settings.max_body_size == 2048
    assert settings.storage == {"kind": "manta", "url": "http://127.0.0.1:1"}
    assert settings.catalog == {"kind": "embedded", "path": "/srv/images"}


def test_env_overrides_file(tmp_path: Path) -> None:
    env = {
        "CLOUDAPI_GATEWAY_PORT": "9100",
        "CLOUDAPI_GATEWAY_LOAD_ENTRYPOINTS": "false",
        "CLOUDAPI_GATEWAY_DISABLED_PLUGINS": "a, b",
        "CLOUDAPI_GATEWAY_STORAGE__URL": "http://manta.test",
        "CLOUDAPI_GATEWAY_UNRELATED_SWITCH": "ignored",
        "PORT": "1",
    }
    settings = load_settings(write(tmp_path, TOML), env=env)
    assert settings.port == 9100
    assert settings.load_entrypoints is False
    assert settings.disabled_plugins == ("a", "b")
    assert settings.storage == {"kind": "manta", "url": "http://manta.test"}


def test_flags_override_env(tmp_path: Path) -> None:
    settings = load_settings(
        write(tmp_path, TOML),
        env={"CLOUDAPI_GATEWAY_PORT": "9100"},
        overrides={"port": 9200, "host": None, "data_dir": str(tmp_path / "d")},
    )
    assert settings.port == 9200
    assert settings.host == "0.0.0.0"  # None means "flag not given"
    assert settings.data_dir == tmp_path / "d"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 70000", "port must be an integer from 0 to 65535"),
        ('port = "eighty"', "port must be an integer"),
        ("prot = 80", "unknown setting(s) prot"),
        ("max_body_size = 0", "max_body_size must be an integer >= 1"),
        ("load_entrypoints = 1", "load_entrypoints must be true or false"),
        ('disabled_plugins = "s3"', "disabled_plugins must be a list of strings"),
        ('storage = "manta"', "storage must be a table"),
        ('[storage]\nurl = "x"', "storage.kind is required"),
        ('[catalog]\npath = "x"', "catalog.kind is required"),
        ("port = ", "is not valid TOML"),
        ("lease_seconds = 0.5", "lease_seconds must be a number >= 1"),
        ("sweep_interval = 0", "sweep_interval must be a number > 0"),
    ],
)
def test_bad_file_values(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, text), env={})
    assert message in str(info.value)
    assert "gateway.toml" in str(info.value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CLOUDAPI_GATEWAY_PORT": "http"}, "port must be an integer from 0 to 65535, got 'http'"),
        ({"CLOUDAPI_GATEWAY_LOAD_ENTRYPOINTS": "maybe"}, "load_entrypoints must be true or false"),
        ({"CLOUDAPI_GATEWAY_MAX_BODY_SIZE": "-1"}, "max_body_size must be an integer >= 1"),
    ],
)
def test_bad_env_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env=env)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml", env={})


def test_journal_timings_from_env() -> None:
    settings = load_settings(
        env={"CLOUDAPI_GATEWAY_LEASE_SECONDS": "5", "CLOUDAPI_GATEWAY_SWEEP_INTERVAL": "0.5"}
    )
    assert (settings.lease_seconds, settings.sweep_interval) == (5.0, 0.5)
    assert settings.journal_db == Path("data") / "journal.sqlite"
