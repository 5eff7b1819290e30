"""The accounts file of a ``--data-dir``: logins, public keys, sub-users and operators.

Objects live in SQLite; accounts are few and change rarely, so they are one small JSON document
(``DIR/accounts.json``) rewritten whole on every change. A write goes to a temporary file that is
fsynced and renamed over the old one, then the directory is fsynced: a crash at any point leaves
the previous file or the new one, never a torn one. Only public keys are kept.

    {"version": 1,
     "accounts": [{"login": "alice", "operator": false,
                   "keys": ["ssh-ed25519 AAAA... alice@laptop"],
                   "users": {"ci": ["ecdsa-sha2-nistp256 AAAA..."]}}]}
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNTS_FILE = "accounts.json"
FORMAT_VERSION = 1


class AccountFileError(ValueError):
    """The accounts file exists but cannot be used; the message names the file and the fault."""


@dataclass(frozen=True)
class AccountRecord:
    """One account as stored: OpenSSH public key lines, not parsed keys."""

    login: str
    operator: bool = False
    keys: tuple[str, ...] = ()
    users: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"login": self.login, "operator": self.operator, "keys": list(self.keys),
                "users": {user: list(keys) for user, keys in sorted(self.users.items())}}


def _key_lines(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{where}: keys must be a list of OpenSSH public key lines")
    return tuple(value)


def _record(raw: Any, index: int) -> AccountRecord:
    where = f"accounts[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("login"), str):
        raise ValueError(f"{where}: expected an object with a string login")
    users = raw.get("users", {})
    if not isinstance(users, dict):
        raise ValueError(f"{where}: users must be an object")
    operator = raw.get("operator", False)
    if not isinstance(operator, bool):
        raise ValueError(f"{where}: operator must be true or false")
    return AccountRecord(
        login=raw["login"],
        operator=operator,
        keys=_key_lines(raw.get("keys", []), where),
        users={str(u): _key_lines(k, f"{where}.users.{u}") for u, k in users.items()},
    )


def load_accounts(path: Path) -> list[AccountRecord]:
    """The records in ``path``; none if it does not exist. Raises AccountFileError if unusable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise AccountFileError(f"cannot read {path}: {exc}") from exc
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"expected {{\"version\": {FORMAT_VERSION}, \"accounts\": [...]}}")
        accounts = doc.get("accounts")
        if not isinstance(accounts, list):
            raise ValueError("accounts must be a list")
        return [_record(raw, i) for i, raw in enumerate(accounts)]
    except ValueError as exc:
        raise AccountFileError(f"{path} is not a usable accounts file: {exc}") from exc


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_accounts(path: Path, records: list[AccountRecord]) -> None:
    """Replace ``path`` atomically with ``records``; raises OSError and leaves the old file."""
    doc = {"version": FORMAT_VERSION, "accounts": [r.to_json() for r in records]}
    data = (json.dumps(doc, indent=1, sort_keys=False) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)
