"""Accounts the fake Manta knows: logins, their SSH public keys, sub-users, and which are operators.

Kept apart from HTTP so that the CLI, the admin surface and embedding code share one registry.
With a data directory (``persist_to``) every change is written to its accounts file before it
takes effect, so a restart with the same ``--data-dir`` knows the same accounts.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from fake_manta.account_file import AccountFileError, AccountRecord, load_accounts, save_accounts

LOGIN_RE = r"^[a-zA-Z][a-zA-Z0-9_\-.@%]+$"


def md5_fingerprint(public_key_line: str) -> str:
    """Colon-hex MD5 of an OpenSSH public key line's blob (the keyId form Manta clients send)."""
    blob = base64.b64decode(public_key_line.split()[1])
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _parse_key(public_key_line: str) -> tuple[str, str, object]:
    """(stripped line, md5 fingerprint, parsed key); ValueError if it is not a public key."""
    line = public_key_line.strip()
    try:
        key = serialization.load_ssh_public_key(line.encode())
        fingerprint = md5_fingerprint(line)
    except (ValueError, IndexError, TypeError, UnicodeError) as exc:
        raise ValueError(f"not an OpenSSH public key line: {line[:40]!r}") from exc
    return line, fingerprint, key


@dataclass(frozen=True)
class Account:
    """A snapshot: a change replaces the Account, so readers never see one half-updated."""

    login: str
    operator: bool = False
    #: md5 fingerprint -> parsed public key (cryptography object)
    keys: dict[str, object] = field(default_factory=dict)
    #: sub-user login -> (md5 fingerprint -> parsed public key); keyId ``/LOGIN/USER/keys/FP``.
    #: A sub-user acts as its account (same trees, same operator bit); RBAC is not modelled.
    users: dict[str, dict[str, object]] = field(default_factory=dict)
    #: md5 fingerprint -> OpenSSH public key line, for ``keys`` (what the accounts file keeps)
    key_lines: dict[str, str] = field(default_factory=dict)
    #: sub-user login -> (md5 fingerprint -> OpenSSH public key line)
    user_key_lines: dict[str, dict[str, str]] = field(default_factory=dict)

    def with_key(self, line: str, fingerprint: str, key: object) -> Account:
        return replace(self, keys={**self.keys, fingerprint: key},
                       key_lines={**self.key_lines, fingerprint: line})

    def with_user(self, user: str) -> Account:
        if user in self.users:
            return self
        return replace(self, users={**self.users, user: {}},
                       user_key_lines={**self.user_key_lines, user: {}})

    def with_user_key(self, user: str, line: str, fingerprint: str, key: object) -> Account:
        account = self.with_user(user)
        return replace(
            account,
            users={**account.users, user: {**account.users[user], fingerprint: key}},
            user_key_lines={**account.user_key_lines,
                            user: {**account.user_key_lines[user], fingerprint: line}},
        )

    def record(self) -> AccountRecord:
        return AccountRecord(
            login=self.login, operator=self.operator, keys=tuple(self.key_lines.values()),
            users={u: tuple(lines.values()) for u, lines in self.user_key_lines.items()},
        )


def _check_login(login: str, what: str = "login") -> None:
    if not isinstance(login, str) or not re.match(LOGIN_RE, login):
        raise ValueError(f"invalid {what} {login!r}")


class AccountRegistry:
    """Thread-safe: the background-thread runner adds accounts from another thread."""

    def __init__(self, path: Path | None = None) -> None:
        self._accounts: dict[str, Account] = {}
        self._lock = threading.Lock()
        self._path: Path | None = None
        if path is not None:
            self.persist_to(path)

    @property
    def path(self) -> Path | None:
        """The accounts file every change is written to, if any."""
        return self._path

    def persist_to(self, path: Path) -> None:
        """Load the accounts in ``path`` (beside those already here), then keep it up to date.

        Raises ``AccountFileError`` (a ValueError) if the file exists but is unusable.
        """
        loaded: dict[str, Account] = {}
        for record in load_accounts(path):
            loaded[record.login] = _account_from_record(record, path)
        with self._lock:
            for login, account in loaded.items():
                here = self._accounts.get(login)
                self._accounts[login] = account if here is None else _merge(account, here)
            self._path = Path(path)

    def _change(self, login: str, change: Callable[[Account | None], Account]) -> Account:
        """Apply ``change`` to ``login``'s account: written to the file first, then visible.

        If writing fails (OSError) nothing changes, in memory or on disk.
        """
        with self._lock:
            before = self._accounts.get(login)
            account = change(before)
            accounts = {**self._accounts, login: account}
            if self._path is not None and (before is None or before.record() != account.record()):
                save_accounts(self._path, [a.record() for a in accounts.values()])
            self._accounts = accounts
            return account

    def add_account(self, login: str, *, operator: bool = False) -> Account:
        """Create ``login`` (or return it, promoting it to operator if asked)."""
        _check_login(login)

        def change(account: Account | None) -> Account:
            account = account or Account(login)
            return replace(account, operator=True) if operator else account

        return self._change(login, change)

    def add_key(self, login: str, public_key_line: str) -> str:
        """Register an OpenSSH public key for ``login``; returns its md5 fingerprint."""
        line, fingerprint, key = _parse_key(public_key_line)

        def change(account: Account | None) -> Account:
            if account is None:
                raise KeyError(login)
            return account.with_key(line, fingerprint, key)

        self._change(login, change)
        return fingerprint

    def add_user(self, login: str, user: str) -> None:
        """Create sub-user ``user`` of ``login`` (no keys yet); idempotent."""
        _check_login(user, "sub-user login")

        def change(account: Account | None) -> Account:
            if account is None:
                raise KeyError(login)
            return account.with_user(user)

        self._change(login, change)

    def add_user_key(self, login: str, user: str, public_key_line: str) -> str:
        """Register an OpenSSH public key for sub-user ``login/user`` (created if new).

        Returns the key's md5 fingerprint; the client's keyId is ``/login/user/keys/FP``.
        """
        _check_login(user, "sub-user login")
        line, fingerprint, key = _parse_key(public_key_line)

        def change(account: Account | None) -> Account:
            if account is None:
                raise KeyError(login)
            return account.with_user_key(user, line, fingerprint, key)

        self._change(login, change)
        return fingerprint

    def get(self, login: str) -> Account | None:
        with self._lock:
            return self._accounts.get(login)

    def logins(self) -> list[str]:
        with self._lock:
            return sorted(self._accounts)


def _account_from_record(record: AccountRecord, path: Path) -> Account:
    """Rebuild an Account from the file, checking every login and key as if added anew."""
    try:
        _check_login(record.login)
        account = Account(record.login, operator=record.operator)
        for line in record.keys:
            account = account.with_key(*_parse_key(line))
        for user, lines in record.users.items():
            _check_login(user, "sub-user login")
            account = account.with_user(user)
            for line in lines:
                account = account.with_user_key(user, *_parse_key(line))
    except ValueError as exc:
        raise AccountFileError(f"{path}: account {record.login!r}: {exc}") from exc
    return account


def _merge(stored: Account, given: Account) -> Account:
    """An account both in the file and given before loading it: the union of the two."""
    merged = replace(stored, operator=stored.operator or given.operator)
    for fingerprint, line in given.key_lines.items():
        merged = merged.with_key(line, fingerprint, given.keys[fingerprint])
    for user, lines in given.user_key_lines.items():
        merged = merged.with_user(user)
        for fingerprint, line in lines.items():
            merged = merged.with_user_key(user, line, fingerprint, given.users[user][fingerprint])
    return merged
