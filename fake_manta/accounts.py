"""Accounts the fake Manta knows: logins, their SSH public keys, and which are operators.

Kept apart from HTTP so that the CLI, the admin surface and embedding code share one registry.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import serialization

LOGIN_RE = r"^[a-zA-Z][a-zA-Z0-9_\-.@%]+$"


def md5_fingerprint(public_key_line: str) -> str:
    """Colon-hex MD5 of an OpenSSH public key line's blob (the keyId form Manta clients send)."""
    blob = base64.b64decode(public_key_line.split()[1])
    digest = hashlib.md5(blob).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


@dataclass
class Account:
    login: str
    operator: bool = False
    #: md5 fingerprint -> parsed public key (cryptography object)
    keys: dict[str, object] = field(default_factory=dict)
    #: sub-user login -> (md5 fingerprint -> parsed public key); keyId ``/LOGIN/USER/keys/FP``.
    #: A sub-user acts as its account (same trees, same operator bit); RBAC is not modelled.
    users: dict[str, dict[str, object]] = field(default_factory=dict)


class AccountRegistry:
    """Thread-safe: the background-thread runner adds accounts from another thread."""

    def __init__(self) -> None:
        self._accounts: dict[str, Account] = {}
        self._lock = threading.Lock()

    def add_account(self, login: str, *, operator: bool = False) -> Account:
        """Create ``login`` (or return it, promoting it to operator if asked)."""
        if not re.match(LOGIN_RE, login):
            raise ValueError(f"invalid login {login!r}")
        with self._lock:
            account = self._accounts.setdefault(login, Account(login))
            account.operator = account.operator or operator
            return account

    def add_key(self, login: str, public_key_line: str) -> str:
        """Register an OpenSSH public key for ``login``; returns its md5 fingerprint."""
        key = serialization.load_ssh_public_key(public_key_line.strip().encode())
        fingerprint = md5_fingerprint(public_key_line.strip())
        with self._lock:
            if login not in self._accounts:
                raise KeyError(login)
            self._accounts[login].keys[fingerprint] = key
        return fingerprint

    def add_user(self, login: str, user: str) -> None:
        """Create sub-user ``user`` of ``login`` (no keys yet); idempotent."""
        if not re.match(LOGIN_RE, user):
            raise ValueError(f"invalid sub-user login {user!r}")
        with self._lock:
            if login not in self._accounts:
                raise KeyError(login)
            self._accounts[login].users.setdefault(user, {})

    def add_user_key(self, login: str, user: str, public_key_line: str) -> str:
        """Register an OpenSSH public key for sub-user ``login/user`` (created if new).

        Returns the key's md5 fingerprint; the client's keyId is ``/login/user/keys/FP``.
        """
        self.add_user(login, user)
        key = serialization.load_ssh_public_key(public_key_line.strip().encode())
        fingerprint = md5_fingerprint(public_key_line.strip())
        with self._lock:
            self._accounts[login].users[user][fingerprint] = key
        return fingerprint

    def get(self, login: str) -> Account | None:
        with self._lock:
            return self._accounts.get(login)

    def logins(self) -> list[str]:
        with self._lock:
            return sorted(self._accounts)
