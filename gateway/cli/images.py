"""``cloudapi-gateway images import|list|get|delete``: manage the configured image catalog.

The catalog comes from the plugin manager exactly as the server gets it (``[catalog] kind``),
so these commands work for any catalog plugin, not only the embedded one. ``import`` streams
the file in (the catalog hashes it on the way and refuses a size or sha1 mismatch); nothing of
a failed import remains. The read-only ``list`` and ``get`` refuse a data dir that does not
exist rather than create it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway.catalog import CatalogError, ImageCatalog, InvalidManifest
from gateway.cli import image_upkeep
from gateway.cli.accounts import existing_data_dir
from gateway.cli.common import CliError, common_options
from gateway.server.catalog_host import CatalogAssembly, build_catalog
from gateway.server.plugin_manager import (
    ConfigurationError,
    Hooks,
    PluginError,
    build_plugin_manager,
)
from gateway.settings import Settings, SettingsError, load_settings

CHUNK_SIZE = 1024 * 1024
Command = Callable[[ImageCatalog, Settings, argparse.Namespace], Awaitable[None]]


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        getattr(args, "config", None), overrides={"data_dir": getattr(args, "data_dir", None)}
    )


def catalog_for(settings: Settings, config: Mapping[str, Any] | None = None) -> CatalogAssembly:
    """The catalog ``config`` (default ``settings.catalog``) selects, built as the server
    builds it (``build_catalog``), with what the host lends it (records, storage)."""
    if config is not None:
        settings = replace(settings, catalog=config)
    provided = Hooks(build_plugin_manager(settings)).provided()
    try:
        return build_catalog(
            settings, provided.image_catalogs, provided.storage_targets, export_target=None
        )
    except ConfigurationError as exc:
        raise CliError(str(exc)) from exc


async def _read_file(path: Path) -> AsyncIterator[bytes]:
    """The file in 1 MiB chunks, each read in a worker thread."""
    fh = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(fh.read, CHUNK_SIZE):
            yield chunk
    finally:
        await asyncio.to_thread(fh.close)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


async def _owner_logins(settings: Settings) -> dict[str, str]:
    """Account uuid -> login, read without creating the account store if it is missing."""
    from gateway.cli.accounts import account_store
    from gateway.server.database import DatabaseOptions

    if DatabaseOptions.of(settings).url is None and not settings.accounts_db.exists():
        return {}
    async with account_store(settings, read_only=True) as store:
        return {a.uuid: a.login for a in await store.list_accounts()}


async def _import(catalog: ImageCatalog, settings: Settings, args: argparse.Namespace) -> None:
    from gateway.cli.accounts import account_store

    async with account_store(settings) as store:
        account = await store.get_account(args.owner)
    if account is None:
        raise CliError(f"no account with login {args.owner!r} (see 'cloudapi-gateway accounts')")
    manifest_path, file_path = Path(args.manifest), Path(args.file)
    try:
        text = await asyncio.to_thread(manifest_path.read_text, "utf-8")
        manifest = json.loads(text)
    except OSError as exc:
        raise CliError(f"cannot read manifest {manifest_path}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CliError(f"manifest {manifest_path} is not JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise CliError(f"manifest {manifest_path} is not a JSON object")
    if not await asyncio.to_thread(file_path.is_file):
        raise CliError(f"image file {file_path} does not exist or is not a file")
    manifest["owner"] = account.uuid
    image = await catalog.import_image(manifest, _read_file(file_path))
    _print_json(dict(image.manifest))


async def _list(catalog: ImageCatalog, settings: Settings, args: argparse.Namespace) -> None:
    images = await catalog.list_images()
    if args.json:
        _print_json([dict(i.manifest) for i in images])
        return
    logins = await _owner_logins(settings)
    rows = [("UUID", "NAME", "VERSION", "TYPE", "STATE", "OWNER", "PUBLISHED")]
    for i in images:
        m = i.manifest
        published = str(m.get("published_at", "-"))[:10]
        owner = logins.get(i.owner, i.owner)  # the uuid of an account no longer known
        rows.append((i.uuid, i.name, i.version, str(m.get("type", "-")), i.state, owner, published))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())


async def _get(catalog: ImageCatalog, settings: Settings, args: argparse.Namespace) -> None:
    image = await catalog.get_image(args.uuid)
    if image is None:
        raise CliError(f"image {args.uuid} not found")
    _print_json(dict(image.manifest))


async def _delete(catalog: ImageCatalog, settings: Settings, args: argparse.Namespace) -> None:
    if not await catalog.delete_image(args.uuid):
        raise CliError(f"image {args.uuid} not found")
    print(f"Deleted image {args.uuid}")


async def _migrate(catalog: ImageCatalog, settings: Settings, args: argparse.Namespace) -> None:
    if settings.catalog.get("kind") == "embedded":
        raise CliError(
            "the configured catalog is the embedded one: configure the destination "
            "(e.g. [catalog] kind = \"objectstore\") and name the embedded catalog with --from"
        )
    source_dir = await asyncio.to_thread(
        lambda: Path(args.source or settings.data_dir / "images").expanduser().resolve()
    )
    if not await asyncio.to_thread((source_dir / "catalog.sqlite").is_file):
        raise CliError(f"{source_dir} holds no embedded catalog (no catalog.sqlite)")
    source_config = {"kind": "embedded", "path": str(source_dir)}
    async with catalog_for(settings, source_config).opened() as source:
        counts = await image_upkeep.migrate(source, catalog)
    print(image_upkeep.migrate_summary(counts))
    if counts["conflicting"]:
        raise CliError("some images were not migrated (see above)")


async def _with_catalog(command: Command, args: argparse.Namespace, read_only: bool) -> None:
    settings = _settings(args)
    if read_only:
        existing_data_dir(settings)
    async with catalog_for(settings).opened() as catalog:
        await command(catalog, settings, args)


def _system_error(exc: OSError | sqlite3.Error) -> str:
    """One line for a failure of the machine, not of the input (the catalog has already
    removed what the failed command had written)."""
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _handler(command: Command, *, read_only: bool = False) -> Callable[[argparse.Namespace], int]:
    """Run ``command`` with the configured catalog; refusals become a message and status 1.

    ``read_only``: the data dir must exist already (``existing_data_dir``).
    """

    def run(args: argparse.Namespace) -> int:
        try:
            asyncio.run(_with_catalog(command, args, read_only))
        except InvalidManifest as exc:
            print(f"cloudapi-gateway: error: {exc}", file=sys.stderr)
            for err in exc.errors:
                print(
                    f"    {err['field']}: {err['code']}: {err.get('message', '')}", file=sys.stderr
                )
            return 1
        except (CliError, CatalogError, SettingsError, PluginError) as exc:
            print(f"cloudapi-gateway: error: {exc}", file=sys.stderr)
            return 1
        except (OSError, sqlite3.Error) as exc:  # a full disk, a read-only data dir...
            print(f"cloudapi-gateway: error: {_system_error(exc)}", file=sys.stderr)
            return 1
        return 0

    return run


def register(subparsers: Any) -> None:
    """Add the ``images`` command group to the main CLI."""
    common = common_options()
    images = subparsers.add_parser("images", help="manage the image catalog")
    sub = images.add_subparsers(dest="images_command", metavar="SUBCOMMAND", required=True)

    imp = sub.add_parser(
        "import",
        parents=[common],
        help="import an image: MANIFEST (IMGAPI v2 JSON) and its FILE",
        description="Stream FILE into the catalog, check its size and sha1 against MANIFEST "
        "and record its MD5. The image's owner becomes the account LOGIN.",
    )
    imp.add_argument("--owner", required=True, metavar="LOGIN", help="account that owns it")
    imp.add_argument("manifest", metavar="MANIFEST")
    imp.add_argument("file", metavar="FILE")
    imp.set_defaults(func=_handler(_import))

    lst = sub.add_parser("list", parents=[common], help="list every image in the catalog")
    lst.add_argument("-j", "--json", action="store_true", help="print the manifests as JSON")
    lst.set_defaults(func=_handler(_list, read_only=True))

    get = sub.add_parser("get", parents=[common], help="print an image's manifest")
    get.add_argument("uuid", metavar="UUID")
    get.set_defaults(func=_handler(_get, read_only=True))

    image_upkeep.add_parsers(sub, common, _handler)
    mig = sub.add_parser(
        "migrate",
        parents=[common],
        help="copy an embedded catalog's images into the configured catalog",
        description="Copy every image of the embedded catalog at --from (default: "
        "DATA_DIR/images) into the configured catalog (e.g. objectstore), image by image. "
        "Safe to run again: images already there with the same file are kept.",
    )
    mig.add_argument("--from", dest="source", metavar="DIR", help="the embedded catalog's path")
    mig.set_defaults(func=_handler(_migrate))

    delete = sub.add_parser("delete", parents=[common], help="delete an image and its file")
    delete.add_argument("uuid", metavar="UUID")
    delete.set_defaults(func=_handler(_delete))
