"""Relative paths in a config file are taken from the file's directory; the README's example runs.

Each test runs from another working directory than the config file's, so that a path taken from
the working directory by mistake would not be found.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from gateway.cli.dev import ensure_key
from gateway.server.app import create_app
from gateway.server.plugin_manager import ConfigurationError
from gateway.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def readme_config() -> str:
    """The README's first TOML block: the "Serving with a config file" example."""
    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks, "README.md has no ```toml block"
    return str(blocks[0])


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory that is not the config file's."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_the_readme_config_example_runs_as_written(tmp_path: Path, elsewhere: Path) -> None:
    """Beside the dev-data of a ``cloudapi-gateway dev`` run, as the README says."""
    text = readme_config()
    data = tomllib.loads(text)
    assert data["storage"]["kind"] == "manta"
    key_file = data["storage"]["key_file"]
    assert not Path(key_file).is_absolute()  # the point: relative to the file
    ensure_key(tmp_path / key_file)  # what `cloudapi-gateway dev` leaves there
    config = tmp_path / "gateway.toml"
    config.write_text(text)

    settings = load_settings(config, env={})
    assert settings.config_dir == tmp_path
    assert settings.data_dir == tmp_path / data["data_dir"]
    assert settings.path(key_file) == tmp_path / key_file
    app = create_app(settings)  # builds the storage target: loads the key now
    assert app is not None
    assert list(elsewhere.iterdir()) == []


def test_relative_key_file_is_taken_from_the_config_files_directory(
    tmp_path: Path, elsewhere: Path
) -> None:
    conf = tmp_path / "etc"
    ensure_key(conf / "keys" / "operator")
    config = conf / "gateway.toml"
    config.write_text(
        'data_dir = "data"\n'
        "[storage]\n"
        'kind = "manta"\n'
        'url = "http://127.0.0.1:9"\n'
        'user = "operator"\n'
        'key_file = "keys/operator"\n'
    )
    settings = load_settings(config, env={})
    create_app(settings)  # no error: the key was found next to the file

    # Without the config file's directory, the same relative path is the working directory's.
    bare = Settings(data_dir=tmp_path / "data", storage=dict(settings.storage))
    with pytest.raises(ConfigurationError, match="cannot load key_file keys/operator"):
        create_app(bare)


def test_settings_path() -> None:
    with_file = Settings(config_dir=Path("/etc/gw"))
    assert with_file.path("keys/k") == Path("/etc/gw/keys/k")
    assert with_file.path("/abs/k") == Path("/abs/k")
    assert with_file.path("~/k") == Path.home() / "k"
    assert Settings().path("keys/k") == Path("keys/k")  # no file: the working directory's


def test_flags_and_environment_paths_stay_the_working_directorys(
    tmp_path: Path, elsewhere: Path
) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('data_dir = "from-file"\n')
    assert load_settings(config, env={}).data_dir == tmp_path / "from-file"
    env = {"CLOUDAPI_GATEWAY_DATA_DIR": "from-env"}
    assert load_settings(config, env=env).data_dir == Path("from-env")
    flags = {"data_dir": "from-flag"}
    assert load_settings(config, env=env, overrides=flags).data_dir == Path("from-flag")
