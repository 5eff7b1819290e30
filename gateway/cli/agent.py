"""Keys held by ssh-agent (``SSH_AUTH_SOCK``), for ``cloudapi-gateway export``.

Imported only when no key file is given and ``~/.ssh`` has no unencrypted key with the wanted
fingerprint: node-triton's order (node-smartdc-auth's ``KeyRing`` prefers an unlocked key from
the home directory, then the agent). It needs the optional extra
``pip install 'cloudapi-gateway[agent]'``.

The agent protocol is spoken by **asyncssh** (``asyncssh.connect_agent``), a maintained library,
rather than by code of our own. asyncssh rather than paramiko's ``Agent`` because:

- it is asyncio-native: each request's signature is awaited on the loop that runs the aiohttp
  client, where paramiko's ``Agent`` blocks on its socket;
- it depends only on ``cryptography``, which the gateway needs anyway (and
  ``typing_extensions``); paramiko brings bcrypt, PyNaCl and invoke as well;
- its agent keys ask for ``rsa-sha2-256`` signatures (the agent protocol's
  ``SSH_AGENT_RSA_SHA2_256`` flag, ``set_sig_algorithm``), so an RSA key signs as
  ``rsa-sha256`` as triton's does, not as SHA-1;
- it reaches the agents of other platforms too (Windows' OpenSSH pipe, Pageant).

What remains ours is turning the agent's SSH signature (RFC 4253 section 6.6, and RFC 5656
section 3.1.2 for ECDSA) into what HTTP Signature carries: the algorithm name of the http-signature
scheme and, for ECDSA, a DER signature (what node's sshpk sends).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncssh
from asyncssh.agent import SSHAgentKeyPair
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

#: The agent's signature format -> the http-signature algorithm name.
_ALGORITHMS = {
    b"rsa-sha2-256": "rsa-sha256",
    b"rsa-sha2-512": "rsa-sha512",
    b"ssh-rsa": "rsa-sha1",  # an agent too old for the rsa-sha2 flags
    b"ecdsa-sha2-nistp256": "ecdsa-sha256",
    b"ecdsa-sha2-nistp384": "ecdsa-sha384",
    b"ecdsa-sha2-nistp521": "ecdsa-sha512",
    b"ssh-ed25519": "ed25519-sha512",
}


class AgentError(Exception):
    """The agent could not be reached, or refused to sign."""


@dataclass(frozen=True)
class AgentKey:
    """A key the agent holds: its socket, the key's SSH public blob and its comment."""

    socket: str
    public_blob: bytes
    comment: str

    @property
    def md5_fingerprint(self) -> str:
        """The colon-hex MD5 fingerprint of the public blob, as keyIds carry it."""
        digest = hashlib.md5(self.public_blob).hexdigest()  # MD5: the wire format of keyIds
        return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))

    @property
    def sha256_fingerprint(self) -> str:
        """``SHA256:<base64 without padding>``, as ``ssh-add -l`` prints it."""
        digest = base64.b64encode(hashlib.sha256(self.public_blob).digest()).decode()
        return "SHA256:" + digest.rstrip("=")


def _ssh_strings(data: bytes) -> list[bytes]:
    """The length-prefixed strings (RFC 4251 section 5) that ``data`` is made of."""
    out = []
    pos = 0
    while pos < len(data):
        if pos + 4 > len(data):
            raise AgentError("the agent's signature is truncated")
        size = int.from_bytes(data[pos : pos + 4], "big")
        pos += 4
        if pos + size > len(data):
            raise AgentError("the agent's signature is truncated")
        out.append(data[pos : pos + size])
        pos += size
    return out


def http_signature(ssh_signature: bytes) -> tuple[str, bytes]:
    """An agent's SSH signature as (http-signature algorithm, signature bytes)."""
    fields = _ssh_strings(ssh_signature)
    if len(fields) != 2 or fields[0] not in _ALGORITHMS:
        raise AgentError(f"the agent signed as {fields[0][:40]!r}, which is not supported")
    name, blob = fields
    if name.startswith(b"ecdsa-"):
        pair = _ssh_strings(blob)  # mpint r, mpint s (RFC 5656 section 3.1.2)
        if len(pair) != 2:
            raise AgentError("the agent's ECDSA signature is not a pair (r, s)")
        blob = encode_dss_signature(*(int.from_bytes(n, "big") for n in pair))
    return _ALGORITHMS[name], blob


async def list_keys(socket: str) -> list[AgentKey]:
    """Every key the agent at ``socket`` holds; ``AgentError`` if it cannot be asked."""
    try:
        async with asyncssh.connect_agent(socket) as agent:
            pairs = await agent.get_keys()
    except (OSError, ValueError, asyncssh.Error) as exc:
        raise AgentError(f"cannot list the keys of ssh-agent at {socket}: {exc}") from exc
    return [
        AgentKey(socket, bytes(pair.public_data), pair.get_comment() or "")
        for pair in pairs
        # A certificate's blob is not the key's, and keyIds name keys.
        if not pair.algorithm.endswith(b"-cert-v01@openssh.com")
    ]


class AgentSigner:
    """Signs with one agent key over one connection (``open_signer`` makes and closes it)."""

    def __init__(self, key: AgentKey, pair: SSHAgentKeyPair) -> None:
        self.key = key
        self._pair = pair

    async def sign(self, data: bytes) -> tuple[str, str]:
        """(algorithm, base64 signature) of ``data``, made by the agent."""
        try:
            ssh_signature = await self._pair.sign_async(data)
        except (OSError, ValueError, asyncssh.Error) as exc:
            raise AgentError(f"ssh-agent did not sign: {exc}") from exc
        algorithm, raw = http_signature(ssh_signature)
        return algorithm, base64.b64encode(raw).decode()


@contextlib.asynccontextmanager
async def open_signer(key: AgentKey) -> AsyncIterator[AgentSigner]:
    """A signer for ``key``, connected to its agent while the block runs."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            agent = await stack.enter_async_context(asyncssh.connect_agent(key.socket))
            pairs = await agent.get_keys()
        except (OSError, ValueError, asyncssh.Error) as exc:
            raise AgentError(f"cannot reach ssh-agent at {key.socket}: {exc}") from exc
        pair = next(
            (
                p
                for p in pairs
                if isinstance(p, SSHAgentKeyPair) and bytes(p.public_data) == key.public_blob
            ),
            None,
        )
        if pair is None:
            raise AgentError(f"ssh-agent at {key.socket} no longer holds the key {key.comment}")
        if pair.algorithm == b"ssh-rsa":
            pair.set_sig_algorithm(b"rsa-sha2-256")
        yield AgentSigner(key, pair)
