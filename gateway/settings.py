"""Gateway settings: one frozen object built from a TOML file, environment and flags.

Each plugin section (``storage``, ``catalog``) is a plain mapping whose ``kind`` selects the
plugin; the plugin validates the rest of its section itself. ``metrics`` is the host's own
section (``listen``, the Prometheus listener's address).

Precedence, lowest first: defaults, the TOML file, ``CLOUDAPI_GATEWAY_*`` environment
variables, command-line flags. Everything is validated in ``load_settings`` so that a bad value
stops the start with one clear message instead of failing later inside a request.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ENV_PREFIX = "CLOUDAPI_GATEWAY_"
#: ``[metrics] listen`` unless set: where Triton's services serve their Prometheus metrics.
METRICS_LISTEN = "127.0.0.1:8881"
_LISTEN = re.compile(r"^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9_.-]+)):([0-9]{1,5})$")


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
    #: Seconds an export's journal lease lasts without renewal: how long after a crash another
    #: process (or a restart) may take the export over and repair it.
    lease_seconds: float = 60.0
    #: Seconds between two sweeps for expired journal entries (one also runs at start-up).
    sweep_interval: float = 15.0
    #: Seconds a server told to stop by SIGTERM keeps serving while ``/--ready`` answers 503,
    #: so that load balancers stop sending it requests first; 0 stops at once.
    drain_seconds: float = 5.0
    #: Seconds a connection may take to send a whole request head (request line and headers),
    #: counted from its first byte (from the accept for a new connection); then it is closed.
    request_head_timeout: float = 5.0
    #: Seconds an idle connection is kept open between two requests.
    keepalive_timeout: float = 75.0
    #: Seconds a request body may stop arriving before the request is abandoned (408).
    body_idle_timeout: float = 30.0
    #: Addresses or CIDR networks of the load balancers and proxies whose ``X-Forwarded-For``
    #: is believed: the client's address in logs is then the one they forwarded.
    trusted_proxies: tuple[str, ...] = ()
    #: Seconds a signed request's ``Date`` (or ``x-date``) may be away from the gateway's
    #: clock (CloudAPI: 300). A captured request can be replayed within it (docs/security.md).
    clock_skew: int = 300
    #: PEM certificate chain and private key: ``serve`` speaks HTTPS (HTTP/1.1) with them and
    #: re-reads both on SIGHUP. Both or neither; ``None``: plain HTTP (behind a TLS proxy).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: ``{"listen": "host:port"}``: the Prometheus listener (no auth: never the public
    #: address); ``""`` turns it off. One per instance when several run on one host.
    metrics: Mapping[str, Any] = field(default_factory=lambda: {"listen": METRICS_LISTEN})
    #: ``[limits]``: exports per account, the slowdown of failing authentications; read and
    #: checked by ``gateway.server.limits.Limits`` when the app is created.
    limits: Mapping[str, Any] = field(default_factory=dict)
    #: ``[database]``: ``url`` (``postgresql://...``) puts accounts, keys, the export journal
    #: and image records in PostgreSQL, shared by several instances; without it each stays in
    #: its SQLite file under ``data_dir``. Also ``pool_size``, ``statement_timeout``,
    #: ``connect_timeout``, ``refresh_interval`` (``DATABASE_SCHEMA``).
    database: Mapping[str, Any] = field(default_factory=dict)
    #: The directory of the config file these settings were read from (``None``: no file).
    #: Not a setting: ``load_settings`` sets it, and ``path()`` takes relative paths from it.
    config_dir: Path | None = None

    def path(self, value: str | Path) -> Path:
        """A path setting as a ``Path``: ``~`` expanded, a relative one taken from the config
        file's directory (the current directory when there is no config file).

        Plugins use it for the paths in their sections (``[storage] key_file``), so that every
        relative path in a config file means the same whatever directory the gateway runs in.
        """
        path = Path(value).expanduser()
        if self.config_dir is None or path.is_absolute():
            return path
        return self.config_dir / path

    @property
    def accounts_db(self) -> Path:
        return self.data_dir / "accounts.sqlite"

    @property
    def journal_db(self) -> Path:
        return self.data_dir / "journal.sqlite"

    @property
    def records_db(self) -> Path:
        """The image records that hosted catalogs (the object-store catalog) keep."""
        return self.data_dir / "records.sqlite"

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        """``[metrics] listen`` as (host, port); ``None`` when the listener is off."""
        return parse_listen(str(self.metrics.get("listen", METRICS_LISTEN)))


def parse_listen(text: str) -> tuple[str, int] | None:
    """``"host:port"`` (``"[::1]:8881"`` for IPv6) as (host, port); ``""`` is ``None``.

    Raises ``ValueError`` for anything else (a port above 65535 included).
    """
    if text == "":
        return None
    match = _LISTEN.match(text)
    if match is None or int(match[3]) > 65535:
        raise ValueError(f"not a host:port address: {text!r}")
    return match[1] or match[2], int(match[3])


#: The settings document, as JSON Schema: the plugin kit's reader validates it (and converts
#: environment strings to these types); the defaults are the dataclass's own.
SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "host": {"type": "string", "minLength": 1},
        "port": {"type": "integer", "minimum": 0, "maximum": 65535},
        "data_dir": {"type": "string", "minLength": 1, "x-must-be": "a path"},
        "datacenter_name": {"type": "string", "minLength": 1},
        "storage": {
            "type": "object",
            "properties": {"kind": {"type": "string", "minLength": 1}},
            "if": {"minProperties": 1},
            "then": {"required": ["kind"]},
        },
        "catalog": {
            "type": "object",
            "properties": {"kind": {"type": "string", "minLength": 1}},
            "required": ["kind"],
        },
        "disabled_plugins": {"type": "array", "items": {"type": "string"}},
        "load_entrypoints": {"type": "boolean"},
        "max_body_size": {"type": "integer", "minimum": 1},
        "shutdown_timeout": {"type": "number", "minimum": 0},
        "lease_seconds": {"type": "number", "minimum": 1},
        "sweep_interval": {"type": "number", "exclusiveMinimum": 0},
        "drain_seconds": {"type": "number", "minimum": 0},
        "request_head_timeout": {"type": "number", "exclusiveMinimum": 0},
        "keepalive_timeout": {"type": "number", "exclusiveMinimum": 0},
        "body_idle_timeout": {"type": "number", "exclusiveMinimum": 0},
        "clock_skew": {"type": "integer", "minimum": 1},
        "tls_cert": {"type": "string", "minLength": 1, "x-must-be": "a path"},
        "tls_key": {"type": "string", "minLength": 1, "x-must-be": "a path"},
        "trusted_proxies": {
            "type": "array",
            "items": {"type": "string"},
            "x-must-be": 'a list of IP addresses or CIDR networks (such as "10.0.0.0/8")',
        },
        "limits": {"type": "object"},
        "database": {"type": "object"},
        "metrics": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "listen": {
                    "type": "string",
                    "pattern": f"^$|{_LISTEN.pattern}",
                    "x-must-be": '"host:port" (such as "127.0.0.1:8881"), or "" for none',
                },
            },
        },
    },
}
_SECTIONS = ("storage", "catalog", "metrics", "limits", "database")
#: ``[database]``, checked (and environment strings converted) by ``_typed``.
DATABASE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "url": {
            "type": "string",
            "pattern": "^postgres(ql)?://",
            "x-must-be": 'a "postgresql://user:password@host:port/database" URL',
        },
        "pool_size": {"type": "integer", "minimum": 1, "maximum": 1000},
        "statement_timeout": {"type": "number", "exclusiveMinimum": 0},
        "connect_timeout": {"type": "number", "exclusiveMinimum": 0},
        "refresh_interval": {"type": "number", "minimum": 0},
    },
}
#: The one variable outside the ``SECTION__KEY`` pattern: the name operators expect.
DATABASE_URL_ENV = ENV_PREFIX + "DATABASE_URL"
_SCALARS = frozenset(SCHEMA["properties"]) - set(_SECTIONS)


def _read(values: Mapping[str, Any], *, from_text: bool) -> dict[str, Any]:
    """``values`` through the plugin kit's reader; its ``ValueError`` becomes a SettingsError.

    ``from_text``: strings are environment or flag text, to be converted to the declared type
    (a TOML file's values are taken as typed).
    """
    # Imported here: the JSON Schema validator takes long to import, and commands that never
    # read settings (``--version``, ``--help``, ``export``) must start fast.
    from gateway.plugin_kit.config import read_section

    plain = {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
    try:
        return read_section(plain, SCHEMA, convert_strings=from_text)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def _typed(values: Mapping[str, Any], *, base: Path | None) -> dict[str, Any]:
    """Validated values as the dataclass's field types; a relative path is taken from ``base``."""
    out = dict(values)
    for name in ("tls_cert", "tls_key"):
        if out.get(name) is not None:
            path = Path(out[name]).expanduser()
            out[name] = base / path if base is not None and not path.is_absolute() else path
    if "data_dir" in out:
        path = Path(out["data_dir"]).expanduser()
        out["data_dir"] = base / path if base is not None and not path.is_absolute() else path
    if "disabled_plugins" in out:
        out["disabled_plugins"] = tuple(out["disabled_plugins"])
    if "trusted_proxies" in out:
        out["trusted_proxies"] = _proxy_networks(out["trusted_proxies"])
    for name in (
        "shutdown_timeout",
        "lease_seconds",
        "sweep_interval",
        "drain_seconds",
        "request_head_timeout",
        "keepalive_timeout",
        "body_idle_timeout",
    ):
        if name in out:
            out[name] = float(out[name])
    for section in _SECTIONS:
        if section in out:
            out[section] = dict(out[section])
    if "database" in out:
        from gateway.plugin_kit.config import read_section

        try:
            out["database"] = read_section(out["database"], DATABASE_SCHEMA)
        except ValueError as exc:
            raise SettingsError(f"database: {exc}") from None
    if "metrics" in out:
        out["metrics"] = {"listen": METRICS_LISTEN, **out["metrics"]}
        try:
            parse_listen(out["metrics"]["listen"])
        except ValueError:  # the pattern passed it: the port is above 65535
            listen = out["metrics"]["listen"]
            must = SCHEMA["properties"]["metrics"]["properties"]["listen"]["x-must-be"]
            raise SettingsError(f"metrics.listen must be {must}, got {listen!r}") from None
    return out


def _proxy_networks(values: list[str]) -> tuple[str, ...]:
    """``trusted_proxies`` checked one by one: a typo must not silently trust nobody."""
    for value in values:
        try:
            ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            must = SCHEMA["properties"]["trusted_proxies"]["x-must-be"]
            raise SettingsError(f"trusted_proxies must be {must}, got {value!r}") from None
    return tuple(value.strip() for value in values)


def settings_from_mapping(data: Mapping[str, Any], *, base: Path | None = None) -> Settings:
    """Build settings from a parsed TOML document; relative paths are taken from ``base``.

    ``base`` is the config file's directory: it also becomes ``Settings.config_dir``, from which
    plugins take the relative paths in their sections.
    """
    return Settings(**_typed(_read(data, from_text=False), base=base), config_dir=base)


def _env_values(env: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """``CLOUDAPI_GATEWAY_PORT=8081``; ``CLOUDAPI_GATEWAY_STORAGE__URL=x`` sets ``storage.url``."""
    scalars: dict[str, Any] = {}
    sections: dict[str, dict[str, str]] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX):
            continue
        if key == DATABASE_URL_ENV:
            sections.setdefault("database", {})["url"] = value
            continue
        name = key[len(ENV_PREFIX) :].lower()
        section, sep, sub = name.partition("__")
        if sep and section in _SECTIONS and sub:
            sections.setdefault(section, {})[sub] = value
        elif name in _SCALARS:
            scalars[name] = value
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
        changes[name] = value
    return replace(settings, **_typed(_read(changes, from_text=True), base=None))
