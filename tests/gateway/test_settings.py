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


# --- [metrics] and drain_seconds ----------------------------------------------------------------


def test_metrics_default_is_tritons_port() -> None:
    """Checked in a fresh interpreter: this suite moves the default to a free port."""
    import subprocess
    import sys

    code = "from gateway.settings import Settings; s = Settings(); print(s.metrics_address)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "('127.0.0.1', 8881)"
    assert Settings().drain_seconds == 5.0


@pytest.mark.parametrize(
    ("text", "listen", "address"),
    [
        ('[metrics]\nlisten = "0.0.0.0:9100"', "0.0.0.0:9100", ("0.0.0.0", 9100)),
        ('[metrics]\nlisten = "[::1]:8881"', "[::1]:8881", ("::1", 8881)),
        (
            '[metrics]\nlisten = "metrics.internal:8881"',
            "metrics.internal:8881",
            ("metrics.internal", 8881),
        ),
        ('[metrics]\nlisten = ""', "", None),
    ],
)
def test_metrics_listen(
    tmp_path: Path, text: str, listen: str, address: tuple[str, int] | None
) -> None:
    settings = load_settings(write(tmp_path, text), env={})
    assert settings.metrics == {"listen": listen}
    assert settings.metrics_address == address


def test_metrics_table_without_listen_keeps_the_default(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "drain_seconds = 0\n[metrics]\n"), env={})
    assert settings.metrics == Settings().metrics
    assert settings.drain_seconds == 0.0


def test_metrics_and_drain_from_env(tmp_path: Path) -> None:
    env = {"CLOUDAPI_GATEWAY_METRICS__LISTEN": "", "CLOUDAPI_GATEWAY_DRAIN_SECONDS": "2.5"}
    settings = load_settings(write(tmp_path, '[metrics]\nlisten = "127.0.0.1:9"'), env=env)
    assert settings.metrics_address is None  # an empty variable turns the listener off
    assert settings.drain_seconds == 2.5
    env = {"CLOUDAPI_GATEWAY_METRICS__LISTEN": "127.0.0.1:9101"}
    assert load_settings(env=env).metrics_address == ("127.0.0.1", 9101)


LISTEN_MUST = 'metrics.listen must be "host:port" (such as "127.0.0.1:8881"), or "" for none'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[metrics]\nlisten = "8881"', f"{LISTEN_MUST}, got '8881'"),
        ('[metrics]\nlisten = "127.0.0.1"', f"{LISTEN_MUST}, got '127.0.0.1'"),
        ('[metrics]\nlisten = "127.0.0.1:99999"', f"{LISTEN_MUST}, got '127.0.0.1:99999'"),
        ('[metrics]\nlisten = "::1:8881"', LISTEN_MUST),
        ("[metrics]\nlisten = 8881", LISTEN_MUST),
        ('[metrics]\nport = "8881"', "unknown setting(s) port in metrics"),
        ('metrics = "127.0.0.1:8881"', "metrics must be a table"),
        ("drain_seconds = -1", "drain_seconds must be a number >= 0"),
        ('drain_seconds = "soon"', "drain_seconds must be a number"),
    ],
)
def test_bad_metrics_and_drain_values(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(write(tmp_path, text), env={})
    assert message in str(info.value)


def test_bad_metrics_listen_from_env() -> None:
    with pytest.raises(SettingsError, match=r"metrics\.listen must be"):
        load_settings(env={"CLOUDAPI_GATEWAY_METRICS__LISTEN": "localhost"})
