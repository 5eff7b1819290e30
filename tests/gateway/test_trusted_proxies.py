"""Behind a load balancer: ``X-Forwarded-For`` names the client only when the peer is a trusted
proxy (``trusted_proxies``), and only as far as the chain goes through trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest

from gateway.server.client_address import forwarded_client, parse_address, trusted_networks
from gateway.settings import SettingsError, load_settings

PROXIES = trusted_networks(("10.0.0.0/8", "192.0.2.7", "2001:db8::/32"))


@pytest.mark.parametrize(
    ("peer", "header", "client"),
    [
        # No trusted proxy in front: the header is whatever the client made up.
        ("203.0.113.5", ["198.51.100.1"], "203.0.113.5"),
        # One trusted proxy: the address it saw.
        ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
        # The client's own claims, left of what the proxy appended, are not believed.
        ("10.1.2.3", ["1.1.1.1, 198.51.100.1"], "198.51.100.1"),
        # Two trusted proxies in a row (and two header lines): through both.
        ("10.1.2.3", ["198.51.100.1, 192.0.2.7", "10.9.9.9"], "198.51.100.1"),
        # A chain of nothing but trusted proxies: the farthest of them.
        ("10.1.2.3", ["10.0.0.1, 10.0.0.2"], "10.0.0.1"),
        # Garbage ends the walk at the last proxy that could be checked.
        ("10.1.2.3", ["198.51.100.1, not-an-address"], "10.1.2.3"),
        ("10.1.2.3", ["198.51.100.1, not-an-address, 10.0.0.9"], "10.0.0.9"),
        # Ports and brackets, as some proxies write them; IPv6 proxies and clients.
        ("10.1.2.3", ["198.51.100.1:5555"], "198.51.100.1"),
        ("2001:db8::1", ["[2001:db8:ffff::2]:443, [2606:4700::1]:80"], "2606:4700::1"),
        ("::ffff:10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
        # No header: the peer.
        ("10.1.2.3", [], "10.1.2.3"),
    ],
)
def test_forwarded_client(peer: str, header: list[str], client: str) -> None:
    assert forwarded_client(peer, header, PROXIES) == client


def test_without_trusted_proxies_the_header_is_ignored() -> None:
    assert forwarded_client("10.1.2.3", ["198.51.100.1"], ()) == "10.1.2.3"
    assert forwarded_client(None, ["198.51.100.1"], PROXIES) is None


@pytest.mark.parametrize(
    ("text", "address"),
    [("1.2.3.4", "1.2.3.4"), (" 1.2.3.4:80 ", "1.2.3.4"), ("[::1]:80", "::1"), ("::1", "::1")],
)
def test_parse_address(text: str, address: str) -> None:
    assert parse_address(text) == ipaddress.ip_address(address)


@pytest.mark.parametrize("text", ["", "unknown", "[::1", "1.2.3", "1.2.3.4.5", "_hidden"])
def test_parse_address_refuses_what_is_not_an_address(text: str) -> None:
    assert parse_address(text) is None


def test_trusted_proxies_setting() -> None:
    env = {"CLOUDAPI_GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8, 127.0.0.1 ,::1"}
    assert load_settings(env=env).trusted_proxies == ("10.0.0.0/8", "127.0.0.1", "::1")
    assert load_settings(env={}).trusted_proxies == ()
    bad = {"CLOUDAPI_GATEWAY_TRUSTED_PROXIES": "10.0.0.0/8,10.0.0.300"}
    with pytest.raises(SettingsError, match=r"trusted_proxies must be .*'10\.0\.0\.300'"):
        load_settings(env=bad)


@pytest.mark.parametrize(
    ("trusted", "remote"),
    [
        (("127.0.0.1",), "198.51.100.1"),  # the test client is the trusted proxy
        (("10.0.0.0/8",), "127.0.0.1"),  # another proxy is trusted, not this peer
        ((), "127.0.0.1"),
    ],
)
async def test_the_audit_record_names_the_forwarded_client_only_behind_a_trusted_proxy(
    app_client: Any,
    audit_records: Callable[[], list[dict[str, Any]]],
    trusted: tuple[str, ...],
    remote: str,
) -> None:
    client = await app_client(trusted_proxies=trusted)
    response = await client.get("/--ping", headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.1"})
    assert response.status == 200
    (record,) = audit_records()
    assert record["req"]["remoteAddress"] == remote
