"""Gateway settings: one frozen object built from a TOML file, environment and flags.

Each plugin section (``storage``, ``catalog``) is a plain mapping whose ``kind`` selects the
plugin; the plugin validates the rest of its section itself.

Precedence, lowest first: defaults, the TOML file, ``CLOUDAPI_GATEWAY_*`` environment
variables, command-line flags. Everything is validated in ``load_settings`` so that a bad value
stops the start with one clear message instead of failing later inside a request.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "CLOUDAPI_GATEWAY_"


class SettingsError(ValueError):
    """A setting is missing, unknown or has a bad value; the message says which and why."""


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    #: Where the embedded stores live (accounts database, catalog).
    data_dir: Path = Path("data")
    #: ``Triton-Datacenter-Name`` on Ping.
    datacenter_name: str = "cloudapi-gateway"
    #: ``{"kind": "manta", ...}``; empty means no storage (exports answer 503 StorageUnsupported).
    storage: Mapping[str, Any] = field(default_factory=dict)
    #: ``{"kind": "embedded", ...}``.
    catalog: Mapping[str, Any] = field(default_factory=lambda: {"kind": "embedded"})
    #: Plugin names (entry-point names or module names) that must not be loaded.
    disabled_plugins: tuple[str, ...] = ()
    #: Load third-party plugins from the ``cloudapi_gateway`` entry-point group.
    load_entrypoints: bool = True
    #: Largest JSON request body accepted, in bytes.
    max_body_size: int = 1024 * 1024
    #: Seconds a stopping server waits for in-flight requests (exports can take long);
    #: 0 waits without limit (aiohttp's ``shutdown_timeout``).
    shutdown_timeout: float = 3600.0

    @property
    def accounts_db(self) -> Path:
        return self.data_dir / "accounts.sqlite"


_SCALARS: dict[str, type] = {
    "host": str,
    "port": int,
    "data_dir": Path,
    "datacenter_name": str,
    "disabled_plugins": tuple,
    "load_entrypoints": bool,
    "max_body_size": int,
    "shutdown_timeout": float,
}
_SECTIONS = ("storage", "catalog")
KNOWN_KEYS = frozenset(f.name for f in fields(Settings))


def _parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"{name}: expected a boolean (true/false), got {value!r}")


def _coerce(name: str, value: Any, *, from_text: bool, base: Path | None) -> Any:
    """Turn a TOML value (or, with ``from_text``, an env/flag string) into the field's type."""
    kind = _SCALARS[name]
    if kind is bool:
        if from_text and isinstance(value, str):
            return _parse_bool(name, value)
        if not isinstance(value, bool):
            raise SettingsError(f"{name}: expected a boolean, got {value!r}")
        return value
    if kind is int:
        if from_text and isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise SettingsError(f"{name}: expected an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{name}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if from_text and isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise SettingsError(f"{name}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if kind is tuple:
        if from_text and isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{name}: expected a list of strings, got {value!r}")
        return tuple(value)
    if kind is Path:
        if not isinstance(value, str | Path) or not str(value):
            raise SettingsError(f"{name}: expected a path, got {value!r}")
        path = Path(value).expanduser()
        if base is not None and not path.is_absolute():
            path = base / path
        return path
    if not isinstance(value, str):
        raise SettingsError(f"{name}: expected a string, got {value!r}")
    return value


def _validate(settings: Settings) -> Settings:
    if not settings.host:
        raise SettingsError("host: must not be empty")
    if not 0 <= settings.port <= 65535:
        raise SettingsError(f"port: must be between 0 and 65535, got {settings.port}")
    if settings.max_body_size <= 0:
        raise SettingsError(f"max_body_size: must be positive, got {settings.max_body_size}")
    if settings.shutdown_timeout < 0:
        raise SettingsError(
            f"shutdown_timeout: must not be negative, got {settings.shutdown_timeout}"
        )
    for section in _SECTIONS:
        table = getattr(settings, section)
        kind = table.get("kind")
        if section == "catalog" and not kind:
            raise SettingsError('catalog.kind: required (e.g. kind = "embedded")')
        if table and kind is not None and (not isinstance(kind, str) or not kind):
            raise SettingsError(f"{section}.kind: expected a plugin kind name, got {kind!r}")
        if table and kind is None:
            raise SettingsError(f"{section}.kind: required when [{section}] is given")
    return settings


def settings_from_mapping(data: Mapping[str, Any], *, base: Path | None = None) -> Settings:
    """Build settings from a parsed TOML document; relative paths are taken from ``base``."""
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise SettingsError(
            f"unknown setting(s): {', '.join(unknown)} (known: {', '.join(sorted(KNOWN_KEYS))})"
        )
    values: dict[str, Any] = {}
    for name, value in data.items():
        if name in _SECTIONS:
            if not isinstance(value, Mapping):
                raise SettingsError(f"{name}: expected a table ([{name}]), got {value!r}")
            values[name] = dict(value)
        else:
            values[name] = _coerce(name, value, from_text=False, base=base)
    return _validate(Settings(**values))


def _env_values(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """``CLOUDAPI_GATEWAY_PORT=8081``; ``CLOUDAPI_GATEWAY_STORAGE__URL=x`` sets ``storage.url``."""
    scalars: dict[str, Any] = {}
    sections: dict[str, dict[str, str]] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        name = key[len(ENV_PREFIX) :].lower()
        section, sep, sub = name.partition("__")
        if sep and section in _SECTIONS and sub:
            sections.setdefault(section, {})[sub] = value
        elif name in _SCALARS:
            scalars[name] = _coerce(name, value, from_text=True, base=None)
        # Other CLOUDAPI_GATEWAY_* variables belong to other tools (e.g. test switches).
    return scalars, sections


def load_settings(
    config_file: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults < TOML file < ``CLOUDAPI_GATEWAY_*`` env < ``overrides`` (flags; None: unset)."""
    settings = Settings()
    if config_file is not None:
        path = Path(config_file)
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise SettingsError(f"config file {path} does not exist") from None
        except OSError as exc:
            raise SettingsError(f"config file {path} cannot be read: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
        try:
            settings = settings_from_mapping(data, base=path.resolve().parent)
        except SettingsError as exc:
            raise SettingsError(f"{path}: {exc}") from None
    scalars, sections = _env_values(os.environ if env is None else env)
    changes: dict[str, Any] = dict(scalars)
    for section, values in sections.items():
        changes[section] = {**getattr(settings, section), **values}
    for name, value in (overrides or {}).items():
        if value is None:
            continue
        if name not in _SCALARS:
            raise SettingsError(f"unknown setting {name!r}")
        changes[name] = _coerce(name, value, from_text=isinstance(value, str), base=None)
    return _validate(replace(settings, **changes))
