"""What a request path names, once routes.py has classified it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """``kind`` is one of: account, storage, uploads_root, uploads_dir, upload_redirect,
    upload_state, upload_commit, upload_abort, upload_part. ``path`` is decoded."""

    kind: str
    login: str
    path: str
    upload_id: str | None = None
    part: str | None = None
