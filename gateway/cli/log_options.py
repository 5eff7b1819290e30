"""``--log-level`` and ``--log-format``, for the commands that serve (``serve`` and ``dev``).

The logs themselves are the host's (``gateway.server.logs``): bunyan JSON records, one a line
on stderr, for the ``bunyan`` CLI and log collectors; or text lines for humans.
"""

from __future__ import annotations

import argparse

#: bunyan's level names, and Python's ``warning``.
LEVEL_NAMES = ("trace", "debug", "info", "warn", "warning", "error", "fatal")


def add_arguments(parser: argparse.ArgumentParser, *, default_format: str = "json") -> None:
    """Add ``--log-level`` (default info) and ``--log-format`` (json or text) to ``parser``."""
    parser.add_argument(
        "--log-level",
        default="info",
        type=str.lower,
        choices=LEVEL_NAMES,
        help="least severe level logged (default: info)",
    )
    parser.add_argument(
        "--log-format",
        default=default_format,
        choices=("json", "text"),
        help="json: one bunyan record a line (pipe to `bunyan` to read it); text: for humans "
        f"(default: {default_format})",
    )


def configure(args: argparse.Namespace) -> None:
    """Send the process's logs to stderr as ``args`` says."""
    from gateway.server import logs  # here: commands that do not serve start faster

    logs.configure(args.log_level, args.log_format)
