"""``cloudapi-gateway images verify|sweep|migrate``: keep a catalog's files honest, and move
an embedded catalog into the configured one (the object-store catalog).

``migrate`` copies image by image and can be run again after any failure: an image already in
the destination with the same file (sha1 and MD5) is kept, one with another file is reported
and left alone, and every copied file is checked against the source's recorded MD5.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.catalog import (
    ImageCatalog,
    SweepableCatalog,
    VerifiableCatalog,
)
from gateway.cli.common import CliError
from gateway.settings import Settings

#: Objects younger than this are left by the sweep: they may belong to an import in flight.
SWEEP_GRACE_SECONDS = 24 * 3600


def _kind(settings: Settings) -> str:
    return str(settings.catalog.get("kind"))


async def verify(catalog: ImageCatalog, settings: Settings, args: argparse.Namespace) -> None:
    """Report every stored file that is missing or differs from its record; fail if any."""
    if not isinstance(catalog, VerifiableCatalog):
        raise CliError(f"the {_kind(settings)} catalog cannot verify its files")
    problems = 0
    async for problem in catalog.verify_files(read=args.read):
        problems += 1
        if args.json:
            fields = {"uuid": problem.uuid, "file": problem.index, "problem": problem.problem}
            print(json.dumps(fields))
        else:
            print(f"{problem.uuid} file{problem.index}: {problem.problem}")
    if problems:
        raise CliError(f"{problems} image file(s) do not match their records")
    if not args.json:
        how = "re-read and hashed" if args.read else "checked against what the store reports"
        print(f"every image file matches its record ({how})")


async def sweep(catalog: ImageCatalog, settings: Settings, args: argparse.Namespace) -> None:
    """Remove stored objects no image record points to."""
    if not isinstance(catalog, SweepableCatalog):
        raise CliError(f"the {_kind(settings)} catalog keeps no objects to sweep")
    removed = await catalog.sweep_orphans(older_than=args.older_than, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"{verb} {path}")
    print(f"{len(removed)} orphaned object(s) {verb}")


async def migrate(
    source: ImageCatalog, destination: ImageCatalog, *, quiet: bool = False
) -> dict[str, int]:
    """Copy every image of ``source`` missing from ``destination``; counts by outcome."""
    counts = {"copied": 0, "kept": 0, "conflicting": 0}
    for image in await source.list_images():
        existing = await destination.get_image(image.uuid)
        if existing is not None:
            same = [(f.sha1, f.content_md5) for f in existing.files] == [
                (f.sha1, f.content_md5) for f in image.files
            ]
            outcome = "kept" if same else "conflicting"
        else:
            copied = await destination.import_image(
                dict(image.manifest), source.open_file(image.uuid)
            )
            if [f.content_md5 for f in copied.files] != [f.content_md5 for f in image.files]:
                raise CliError(
                    f"image {image.uuid}: the copied file's MD5 differs from the source's record"
                )
            outcome = "copied"
        counts[outcome] += 1
        if not quiet:
            print(f"{image.uuid} {image.name}@{image.version}: {outcome}")
    return counts


def migrate_summary(counts: dict[str, int]) -> str:
    text = f"{counts['copied']} copied, {counts['kept']} already there"
    if counts["conflicting"]:
        text += f", {counts['conflicting']} with another file under the same uuid (left alone)"
    return text


def add_parsers(sub: Any, common: argparse.ArgumentParser, handler: Any) -> None:
    """``verify`` and ``sweep`` (``migrate`` needs two catalogs: see ``images.register``)."""
    ver = sub.add_parser(
        "verify",
        parents=[common],
        help="check every stored image file against its record",
        description="Ask the store for each file's size and MD5 (--read: read and hash every "
        "byte) and report those that are missing or differ. Exit status 1 if any does.",
    )
    ver.add_argument("--read", action="store_true", help="re-read and hash every file")
    ver.add_argument("-j", "--json", action="store_true", help="one JSON object per problem")
    ver.set_defaults(func=handler(verify, read_only=True))

    swp = sub.add_parser(
        "sweep",
        parents=[common],
        help="remove stored objects that no image record points to",
        description="List the catalog's prefix in the store and remove the objects no image "
        "uses (left by an import or a delete that was interrupted).",
    )
    swp.add_argument(
        "--older-than",
        type=float,
        default=SWEEP_GRACE_SECONDS,
        metavar="SECONDS",
        help="only objects last changed this long ago (default: %(default)s, so that imports "
        "in flight are never touched)",
    )
    swp.add_argument("-n", "--dry-run", action="store_true", help="list, remove nothing")
    swp.set_defaults(func=handler(sweep, read_only=True))
