"""The metadata record of one path (object or directory), modelled on muskie's Moray record."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any, Literal

EntryType = Literal["object", "directory"]

#: MD5 of the empty string, base64: what muskie stores for zero-byte objects.
EMPTY_MD5 = "1B2M2Y8AsgTpgAmY7PhCfg=="


def now_ms() -> int:
    """Milliseconds since the epoch, muskie's mtime resolution."""
    return time.time_ns() // 1_000_000


def iso_ms(ms: int) -> str:
    """``new Date(ms).toISOString()``: milliseconds and a trailing ``Z`` (listing ``mtime``)."""
    dt = datetime.fromtimestamp(ms // 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"


def http_date(ms: int) -> str:
    """RFC 1123 date for ``Last-Modified``."""
    return formatdate(ms / 1000, usegmt=True)


def parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def name_of(path: str) -> str:
    return path.rsplit("/", 1)[-1]


@dataclass
class Entry:
    """One namespace entry. ``path`` is the decoded absolute path (``/login/stor/a``).

    Objects carry the byte-store handle in ``blob``; a SnapLink is an object whose ``etag``
    (muskie's objectId) equals its source's and whose blob shares the source's bytes. An MPU's
    upload directory carries its state in ``upload``.
    """

    path: str
    type: EntryType
    owner: str
    mtime: int = field(default_factory=now_ms)
    #: stored user headers, lower-case names: m-*, cache-control, content-disposition, CORS, ...
    headers: dict[str, str] = field(default_factory=dict)
    etag: str | None = None
    size: int = 0
    content_type: str = "application/octet-stream"
    content_md5: str = EMPTY_MD5
    durability: int = 2
    blob: str | None = None
    upload: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return name_of(self.path)

    @property
    def parent(self) -> str:
        return parent_of(self.path)

    @property
    def is_dir(self) -> bool:
        return self.type == "directory"

    @property
    def copies(self) -> int:
        """What ``Durability-Level`` reports: 0 for empty objects (no sharks), else copies."""
        return 0 if self.size == 0 else self.durability

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Entry:
        return cls(**record)

    def listing_row(self) -> dict[str, Any]:
        """One NDJSON listing row, in muskie's field order (``common.js readdir``)."""
        if self.is_dir:
            return {"name": self.name, "type": "directory", "mtime": iso_ms(self.mtime)}
        row: dict[str, Any] = {
            "name": self.name,
            "etag": self.etag,
            "size": self.size,
            "type": "object",
            "contentType": self.content_type,
        }
        if "content-disposition" in self.headers:
            row["contentDisposition"] = self.headers["content-disposition"]
        row["contentMD5"] = self.content_md5
        row["mtime"] = iso_ms(self.mtime)
        row["durability"] = self.copies
        return row
