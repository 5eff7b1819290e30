"""Manta-style paths as keys of one S3 bucket, and the directories S3 does not have."""

from __future__ import annotations

#: The top-level trees of a Manta account: always directories, as they are in Manta.
ROOT_TREES = frozenset({"stor", "public", "reports", "uploads"})


def path_to_key(path: str) -> str:
    """``/login/stor/a/b`` -> ``login/stor/a/b`` (``.``/``..`` and empty segments refused)."""
    if not path.startswith("/"):
        raise ValueError(f"not an absolute path: {path!r}")
    parts = [p for p in path.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"invalid storage path: {path!r}")
    return "/".join(parts)


def is_root(key: str) -> bool:
    """``login`` and ``login/stor`` (etc.) always exist, as Manta's root directories do."""
    parts = key.split("/")
    return len(parts) == 1 or (len(parts) == 2 and parts[1] in ROOT_TREES)
