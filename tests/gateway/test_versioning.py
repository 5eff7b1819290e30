"""API version negotiation: node-semver ranges as restify matches them, over HTTP and alone."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import InvalidVersion
from gateway.server.versioning import max_satisfying, negotiate


@pytest.mark.parametrize(
    ("wanted", "served"),
    [
        ("*", "9.0.0"),
        ("", "9.0.0"),
        ("x", "9.0.0"),
        ("~9||~8", "9.0.0"),
        ("~8||~7", "8.0.0"),
        ("~7||~8", "8.0.0"),
        ("~7", "7.3.0"),
        ("~7.2", "7.2.0"),
        ("~7.2.0", "7.2.0"),
        ("7.0.0", "7.0.0"),
        ("=7.1.0", "7.1.0"),
        ("v7.1.0", "7.1.0"),
        ("7", "7.3.0"),
        ("7.x", "7.3.0"),
        ("7.1", "7.1.0"),
        (">=7.1", "9.0.0"),
        (">7.1", "9.0.0"),
        ("<8", "7.3.0"),
        ("<=7.1", "7.1.0"),
        (">=7.1 <7.3", "7.2.0"),
        ("7.1.0 - 7.2.0", "7.2.0"),
        ("^7.1", "7.3.0"),
        ("~> 8", "8.0.0"),
        (" ~9 || ~8 ", "9.0.0"),
        ("~6", None),
        ("10.0.0", None),
        ("7.0.1", None),
        ("<7", None),
        ("garbage", None),
        ("~", None),
        ("7.0.0.0", None),
        ("||", "9.0.0"),
        ("a" * 1000, None),
    ],
)
def test_max_satisfying(wanted: str, served: str | None) -> None:
    assert max_satisfying(wanted) == served


def test_negotiate_reads_headers_in_order() -> None:
    assert negotiate({"Accept-Version": "~7.2", "Api-Version": "~8"}, "GET", "/") == "7.2.0"
    assert negotiate({"Api-Version": "~8"}, "GET", "/") == "9.0.0"  # not read, as in CloudAPI
    assert negotiate({"X-Api-Version": "7.1.0"}, "GET", "/") == "7.1.0"
    assert negotiate({}, "GET", "/") == "9.0.0"


def test_negotiate_refuses_with_restify_message() -> None:
    with pytest.raises(InvalidVersion) as info:
        negotiate({"Accept-Version": "~6"}, "POST", "/my/images/x")
    assert info.value.message == "~6 is not supported by POST /my/images/x"
    assert info.value.status == 400


@pytest.mark.parametrize(
    ("headers", "served"),
    [
        ({}, "9.0.0"),
        ({"Accept-Version": "~9||~8"}, "9.0.0"),
        ({"Accept-Version": "~7.2", "Api-Version": "~7.2"}, "7.2.0"),
        ({"Accept-Version": "~7||~8"}, "8.0.0"),
        ({"Api-Version": "~7.3"}, "9.0.0"),
        ({"X-Api-Version": "7.0.0"}, "7.0.0"),
        ({"Accept-Version": "*"}, "9.0.0"),
    ],
)
async def test_api_version_header(client: Any, headers: dict[str, str], served: str) -> None:
    resp = await client.get("/--ping", headers=headers)
    assert resp.status == 200
    # CloudAPI sends its own version whatever it served (test_wire_details checks both).
    assert resp.headers["Api-Version"] == resp.headers["X-Api-Version"] == "9.0.0"
    assert served in ("7.0.0", "7.2.0", "8.0.0", "9.0.0")


@pytest.mark.parametrize("wanted", ["~6", "10", "nonsense", "~7.9"])
async def test_unsatisfiable_range_is_400(client: Any, wanted: str) -> None:
    resp = await client.get("/--ping", headers={"Accept-Version": wanted})
    assert resp.status == 400
    assert await resp.json() == {
        "code": "InvalidVersion",
        "message": f"{wanted} is not supported by GET /--ping",
    }


async def test_unknown_path_stays_404_with_a_bad_range(client: Any) -> None:
    resp = await client.get("/nowhere", headers={"Accept-Version": "~6"})
    assert resp.status == 404
