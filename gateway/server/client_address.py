"""The client's address, as logs and limits count it: ``X-Forwarded-For`` only from proxies
we trust.

Behind a load balancer every connection comes from the balancer, and the client's address is
in ``X-Forwarded-For``, which each proxy extends on the right. Anyone can send that header,
so it is believed only when the peer is in ``trusted_proxies``, and then only as far as the
chain goes through trusted proxies: read from the right, the first address that is not a
trusted proxy is the client (an entry that is not an address ends the walk: the last proxy
that could be checked is all that is known). Without ``trusted_proxies`` the peer's address is
the client's, whatever the headers say.
"""

from __future__ import annotations

import functools
import ipaddress
import weakref

from aiohttp import web

from gateway.server.appkeys import SETTINGS

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=16)
def trusted_networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    """``trusted_proxies`` (validated by the settings) as networks, parsed once."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def parse_address(text: str) -> IPAddress | None:
    """An address as proxies write it (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``, ``::1``);
    ``None`` for anything else. IPv4-mapped IPv6 addresses become IPv4."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _is_trusted(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in networks)


def forwarded_client(
    peer: str | None, forwarded_for: list[str], networks: tuple[IPNetwork, ...]
) -> str | None:
    """The client's address, from the ``peer`` and the ``X-Forwarded-For`` header values."""
    if peer is None or not networks or not forwarded_for:
        return peer
    client = parse_address(peer)
    if client is None or not _is_trusted(client, networks):
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            break
        client = address
        if not _is_trusted(address, networks):
            break
    return str(client)


#: The serving app and its trusted networks, resolved on its first request: ``config_dict``
#: is rebuilt on every access, and every request is audited. A server serves one app; a
#: weak reference lets the apps of tests go.
_LAST: tuple[weakref.ref[web.Application], tuple[IPNetwork, ...]] | None = None


def app_networks(request: web.Request) -> tuple[IPNetwork, ...]:
    """The trusted proxies of the app serving ``request``, kept once the app is frozen
    (serving: its settings can no longer change)."""
    global _LAST
    app = request.app
    last = _LAST
    if last is not None and last[0]() is app:
        return last[1]
    networks = trusted_networks(request.config_dict[SETTINGS].trusted_proxies)
    if app.frozen:
        _LAST = (weakref.ref(app), networks)
    return networks


def client_address(request: web.BaseRequest) -> str | None:
    """The address of the client of ``request`` (see the module); the peer's without an app."""
    if not isinstance(request, web.Request):
        return request.remote
    networks = app_networks(request)
    if not networks:
        return request.remote
    forwarded = request.headers.getall("X-Forwarded-For", [])
    return forwarded_client(request.remote, forwarded, networks)
