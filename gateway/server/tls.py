"""HTTPS for ``serve``: one server context from ``tls_cert``/``tls_key``, re-read on SIGHUP.

HTTP/1.1 only (ALPN ``http/1.1``; CloudAPI's clients speak nothing else) and TLS 1.2 or
newer. A reload loads the new files into the live context, so every later handshake uses them
and connections already open keep theirs; the files are first tried in a fresh context, so a
half-written or mismatched pair leaves the running certificate in place.
"""

from __future__ import annotations

import os
import ssl

from gateway.settings import Settings, SettingsError


def _paths(settings: Settings) -> tuple[str, str] | None:
    if settings.tls_cert is None and settings.tls_key is None:
        return None
    if settings.tls_cert is None or settings.tls_key is None:
        missing = "tls_cert" if settings.tls_cert is None else "tls_key"
        raise SettingsError(f"tls_cert and tls_key go together: {missing} is not set")
    return str(settings.tls_cert), str(settings.tls_key)


def _load(context: ssl.SSLContext, cert: str, key: str) -> None:
    for name, path in (("tls_cert", cert), ("tls_key", key)):
        if not os.path.isfile(path):  # OpenSSL's error would not say which file
            raise SettingsError(f"{name} {path} does not exist")
    try:
        context.load_cert_chain(cert, key)
    except OSError as exc:  # ssl.SSLError is an OSError
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise SettingsError(f"TLS certificate {cert} with key {key}: {reason}") from None


def _new_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


def server_context(settings: Settings) -> ssl.SSLContext | None:
    """The context ``serve`` listens with; ``None`` for plain HTTP. ``SettingsError`` says
    which file is missing or unusable."""
    paths = _paths(settings)
    if paths is None:
        return None
    context = _new_context()
    _load(context, *paths)
    return context


def reload(context: ssl.SSLContext, settings: Settings) -> None:
    """Re-read the files into ``context``; on ``SettingsError`` it is left as it was."""
    paths = _paths(settings)
    if paths is None:
        return
    _load(_new_context(), *paths)  # the pair works: only then touch the live context
    _load(context, *paths)
