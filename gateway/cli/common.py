"""What every subcommand module of the command line shares: its error and its common options."""

from __future__ import annotations

import argparse


class CliError(Exception):
    """A user mistake or refusal: printed as ``cloudapi-gateway: error: ...``, exit status 1."""


def common_options(data_dir_help: str = "data directory") -> argparse.ArgumentParser:
    """``--config`` and ``--data-dir`` on every leaf; SUPPRESS keeps a top-level value."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        default=argparse.SUPPRESS,
        help="gateway TOML config file",
    )
    parent.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS, help=data_dir_help)
    return parent
