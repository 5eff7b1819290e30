"""The version ``fake-manta --version`` prints: that of the distribution that ships fake_manta."""

from __future__ import annotations

from importlib import metadata

DISTRIBUTION = "cloudapi-gateway"


def package_version() -> str:
    """The installed distribution's version, or ``unknown`` when run from an uninstalled tree."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"
