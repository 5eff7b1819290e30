"""``cloudapi-gateway``: the command line's root, its ``serve`` and ``plugins`` commands.

Every other subcommand lives in a module of its own beside this one and adds itself with
``register(subparsers)``; they are imported plainly, so a broken one fails loudly.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway import __version__
from gateway.cli import accounts, db, dev, export, images, log_options
from gateway.server.plugin_manager import (
    ConfigurationError,
    PluginError,
    build_plugin_manager,
    describe_plugins,
    disabled_plugin_names,
)
from gateway.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from aiohttp import web

log = logging.getLogger("cloudapi_gateway")


def _add_settings_args(parser: argparse.ArgumentParser, *, network: bool) -> None:
    parser.add_argument("--config", "-c", metavar="FILE", help="TOML settings file")
    parser.add_argument("--data-dir", metavar="DIR", help="where accounts and images live")
    if network:
        parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, help="port to listen on (default 8080)")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from ``--config``, the environment and the flags (flags win)."""
    overrides: dict[str, Any] = {
        "data_dir": getattr(args, "data_dir", None),
        "host": getattr(args, "host", None),
        "port": getattr(args, "port", None),
    }
    return load_settings(getattr(args, "config", None), overrides=overrides)


def serve(app: web.Application, settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM; then stop accepting and let in-flight requests finish.

    SIGTERM drains first: ``/--ready`` answers 503 for ``drain_seconds`` while the server
    still serves (``gateway.server.serving``). No handler timeout anywhere: an export may
    take an hour, and ``shutdown_timeout`` (default one hour) is how long a stopping server
    waits for it.
    """
    from gateway.server.serving import run  # here: --version, --help and export start fast

    run(app, settings)


def _cmd_serve(args: argparse.Namespace) -> int:
    from gateway.server.app import create_app
    from gateway.server.database import DatabaseError
    from gateway.server.serving import ListenError

    settings = settings_from_args(args)
    log_options.configure(args)
    try:
        serve(create_app(settings), settings)
    except ListenError as exc:  # a port in use: one line and a non-zero status
        print(f"cloudapi-gateway: error: {exc}", file=sys.stderr)
        return 1
    except DatabaseError as exc:  # unreachable, or a schema this gateway cannot use
        print(f"cloudapi-gateway: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    rows = describe_plugins(build_plugin_manager(settings))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    disabled = sorted(disabled_plugin_names(settings))
    for row in rows:
        where = row["distribution"] or row["module"]
        print(f"{row['name']}  ({where})")
        provides = row["provides"]
        if provides.get("actions"):
            ranges = row["api_versions"]
            shown = [f"{a} (API versions {ranges[a]})" for a in provides["actions"]]
            print(f"    actions: {', '.join(shown)}")
        for kind in ("storage", "catalogs"):
            if provides.get(kind):
                print(f"    {kind}: {', '.join(provides[kind])}")
        if not provides:
            print(f"    hooks: {', '.join(row['hooks']) or '-'}")
    if disabled:
        print(f"disabled: {', '.join(disabled)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: ``serve``, ``plugins`` and every command module's subcommands."""
    parser = argparse.ArgumentParser(
        prog="cloudapi-gateway",
        description="Triton CloudAPI image endpoints with plugin image actions (ExportImage).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = subparsers.add_parser("serve", help="serve the gateway over HTTP")
    _add_settings_args(serve, network=True)
    log_options.add_arguments(serve)
    serve.set_defaults(func=_cmd_serve)

    plugins = subparsers.add_parser("plugins", help="list loaded plugins and what they provide")
    _add_settings_args(plugins, network=False)
    plugins.add_argument("-j", "--json", action="store_true", help="machine-readable output")
    plugins.set_defaults(func=_cmd_plugins)

    for module in (accounts, images, db, dev, export):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cloudapi-gateway`` and ``python -m gateway``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except (SettingsError, PluginError, ConfigurationError) as exc:
        print(f"cloudapi-gateway: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
