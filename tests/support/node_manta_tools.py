"""Helpers for driving node-manta in the conformance tests: keys on disk and a CLI runner.

A module with a unique name (not ``conftest``) so that test modules can import it safely.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fake_manta import ThreadedFakeManta
from gateway.httpsig import PrivateKey, RequestSigner, md5_fingerprint, ssh_public_key_line
from tests.support.npm_tools import workstation_environ

NODE_MANTA = ("manta", "5.4.2")
#: one CLI run; generous because node starts slowly on a busy 2-core machine
CLI_TIMEOUT = 120.0


@dataclass(frozen=True)
class ClientKey:
    """A key written to ``$HOME/.ssh/<filename>`` (+ ``.pub``)."""

    kind: str
    private: PrivateKey
    filename: str

    @property
    def fingerprint(self) -> str:
        return md5_fingerprint(self.private)

    @property
    def public_line(self) -> str:
        return ssh_public_key_line(self.private, f"{self.kind}@conformance")

    def signer(self, login: str) -> RequestSigner:
        return RequestSigner.for_login(self.private, login)


def start_manta(client_keys: Mapping[str, ClientKey], data_dir: Path | None,
                **options: object) -> ThreadedFakeManta:
    """A started server with alice (rsa, ecdsa, ed25519 keys) and bob."""
    server = ThreadedFakeManta(host="127.0.0.1", port=0, data_dir=data_dir, **options)
    server.start()
    server.add_account("alice", [client_keys[k].public_line for k in ("rsa", "ecdsa", "ed25519")])
    server.add_account("bob", [client_keys["bob"].public_line])
    return server


class NodeManta:
    """Runs node-manta commands as a user on a workstation would, against one server."""

    def __init__(self, bin_dir: Path, home: Path, url: str, user: str, key: ClientKey) -> None:
        self.bin_dir = bin_dir
        self.home = home
        self.url = url
        self.user = user
        self.key = key

    def env(self, **overrides: str) -> dict[str, str]:
        settings = {
            "MANTA_URL": self.url,
            "MANTA_USER": self.user,
            "MANTA_KEY_ID": self.key.fingerprint,
            **overrides,
        }
        return workstation_environ(self.home, **settings)

    def run(self, command: str, *args: str, input: bytes | None = None, check: bool = True,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
        """Run ``command args``; with ``check`` a failure shows the CLI's stderr."""
        proc = subprocess.run(
            [str(self.bin_dir / command), *args],
            input=input if input is not None else b"",
            capture_output=True,
            env=dict(env) if env is not None else self.env(),
            timeout=CLI_TIMEOUT,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{command} {' '.join(args)} exited {proc.returncode}:\n"
                f"{proc.stderr.decode(errors='replace')}"
            )
        return proc

    def out(self, command: str, *args: str, input: bytes | None = None) -> str:
        """stdout of a successful run, as text."""
        return self.run(command, *args, input=input).stdout.decode()

    def as_key(self, key: ClientKey, user: str | None = None) -> NodeManta:
        return NodeManta(self.bin_dir, self.home, self.url, user or self.user, key)
