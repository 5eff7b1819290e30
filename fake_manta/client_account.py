"""An account with a fresh key pair on disk, set up as a Manta client expects to find it.

node-manta and python-manta read ``MANTA_URL``, ``MANTA_USER`` and ``MANTA_KEY_ID`` (the key's
MD5 fingerprint) and look the private key up by that fingerprint in ``$HOME/.ssh``. So the key
pair is written to ``<home>/.ssh/id_<type>`` (+ ``.pub``), in PEM, the one private-key format
that python-manta (``load_pem_private_key``) and node-manta (sshpk) both read. The pytest plugin
(``fake_manta.pytest_plugin``) and plain scripts share this.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from fake_manta.accounts import LOGIN_RE, md5_fingerprint

KeyType = Literal["ecdsa", "rsa"]
KEY_TYPES: tuple[KeyType, ...] = ("ecdsa", "rsa")
_logins = itertools.count(1)


class AccountHost(Protocol):
    """What is needed of a server: FakeMantaServer and ThreadedFakeManta both qualify."""

    @property
    def url(self) -> str: ...

    def add_account(
        self, login: str, public_keys: Iterable[str] = (), operator: bool = False
    ) -> list[str]: ...


@dataclass(frozen=True)
class ClientAccount:
    """A login on a fake Manta and the files and variables a client needs to act as it."""

    login: str
    url: str
    #: the MD5 fingerprint, colon-hex: what ``MANTA_KEY_ID`` holds and keyIds name
    key_id: str
    private_key_path: Path
    public_key_path: Path
    #: a home directory whose ``.ssh`` holds only this key (use it as ``HOME``)
    home: Path
    operator: bool = False

    @property
    def env(self) -> dict[str, str]:
        """``MANTA_URL``, ``MANTA_USER`` and ``MANTA_KEY_ID`` for this account."""
        return {"MANTA_URL": self.url, "MANTA_USER": self.login, "MANTA_KEY_ID": self.key_id}

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """A whole environment for a client subprocess: ``base`` (default ``os.environ``)
        without its ``MANTA_*`` variables and ssh-agent socket, with ``HOME`` and ``env``.

        Without the agent, node-manta and python-manta take the key from ``$HOME/.ssh``.
        """
        source = os.environ if base is None else base
        kept = {k: v for k, v in source.items()
                if not k.startswith("MANTA_") and k != "SSH_AUTH_SOCK"}
        return {**kept, "HOME": str(self.home), **self.env}


def _new_key_pair(key_type: KeyType) -> tuple[bytes, str]:
    """(PEM private key, OpenSSH public key line) of a freshly generated key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if key_type == "ecdsa":
        private = ec.generate_private_key(ec.SECP256R1())
    elif key_type == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise ValueError(f"key_type must be one of {', '.join(KEY_TYPES)}, not {key_type!r}")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    return pem, public


def create_client_account(
    server: AccountHost,
    directory: Path | str,
    login: str | None = None,
    *,
    key_type: KeyType = "ecdsa",
    operator: bool = False,
) -> ClientAccount:
    """Register ``login`` (default: ``user1``, ``user2``... unique in this process) on
    ``server`` with a new key pair whose files go to ``directory/<login>/.ssh/``.

    ECDSA P-256 by default (instant to generate); ``key_type="rsa"`` for RSA 2048.
    Raises ValueError for a bad login or key type.
    """
    if login is None:
        login = f"user{next(_logins)}"
    if not re.match(LOGIN_RE, login):
        raise ValueError(f"invalid login {login!r}")
    pem, public_line = _new_key_pair(key_type)
    home = Path(directory) / login
    ssh = home / ".ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    private_path = ssh / f"id_{key_type}"
    public_path = ssh / f"id_{key_type}.pub"
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    public_path.write_text(f"{public_line} {login}@fake-manta\n")
    server.add_account(login, [public_line], operator=operator)
    return ClientAccount(
        login=login, url=server.url, key_id=md5_fingerprint(public_line),
        private_key_path=private_path, public_key_path=public_path, home=home,
        operator=operator,
    )
