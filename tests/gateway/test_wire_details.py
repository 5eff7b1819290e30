"""CloudAPI's last wire details (hardening items 12, 14 and 16), against the real app.

``Api-Version`` is CloudAPI's own version on every response; only ``Accept-Version`` (or
``X-Api-Version``) is a range; ``Accept`` that admits nothing restify formats is 406 before
authentication; a 405's code is restify's; the clock skew of a signed ``Date`` is a setting.
Where the gateway keeps its own answer (a ``text/plain`` body), the test pins that answer.
"""

from __future__ import annotations

from email.utils import formatdate
from time import time
from typing import Any

import pytest

from tests.support.helpers import EchoPlugin, import_image

NOT_ACCEPTABLE = {
    "code": "NotAcceptableError",
    "message": (
        "Server accepts: application/json,text/plain,application/octet-stream,"
        "application/javascript"
    ),
}


@pytest.fixture
async def echo(app_client: Any, caller_factory: Any) -> Any:
    client = await app_client(plugins=(EchoPlugin(),))
    alice = await caller_factory(client, "alice")
    alice.image = await import_image(client.server.app, alice.account, b"wire")
    return alice


def _echo_path(caller: Any, word: str = "x") -> str:
    return f"/my/images/{caller.image.uuid}?action=echo&word={word}"


# --- item 12: Api-Version -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "served"),
    [
        ({}, "9.0.0"),
        ({"Accept-Version": "~7.2"}, "7.2.0"),
        ({"Accept-Version": "~7||~8"}, "8.0.0"),
        ({"X-Api-Version": "7.0.0"}, "7.0.0"),
        ({"Api-Version": "~7.2"}, "9.0.0"),  # not a range for CloudAPI: served as "*"
        ({"Api-Version": "~6"}, "9.0.0"),  # ... so it can never be unsatisfiable either
        ({"Accept-Version": "~8", "Api-Version": "~7.2"}, "8.0.0"),
    ],
)
async def test_api_version_is_always_cloudapis_own(
    echo: Any, headers: dict[str, str], served: str
) -> None:
    response = await echo.request("POST", _echo_path(echo), headers=headers)
    assert response.status == 200, await response.text()
    assert (await response.json())["api_version"] == served  # what the action saw
    assert response.headers["Api-Version"] == "9.0.0"  # what CloudAPI sends, whatever it served


async def test_api_version_on_errors_too(client: Any) -> None:
    response = await client.get("/--ping", headers={"Accept-Version": "~6"})
    assert response.status == 400
    assert (await response.json())["code"] == "InvalidVersion"
    assert response.headers["Api-Version"] == "9.0.0"


# --- item 14: Accept, 405, bodies ---------------------------------------------------------------


@pytest.mark.parametrize(
    "accept",
    ["text/html", "text/html, application/xhtml+xml", "application/json;q=0", "image/*", "bad"],
)
async def test_an_accept_without_json_is_406_before_auth(client: Any, accept: str) -> None:
    for method, path in (("GET", "/--ping"), ("GET", "/my/images"), ("POST", "/my/images/x")):
        response = await client.request(method, path, headers={"Accept": accept})
        assert response.status == 406, (method, path)
        assert await response.json() == NOT_ACCEPTABLE  # unsigned: 406 comes before 401


@pytest.mark.parametrize(
    "accept",
    [None, "", "*/*", "application/json", "text/*", "text/html, */*;q=0.1", "application/*"],
)
async def test_an_accept_admitting_json_or_text_is_served(client: Any, accept: str | None) -> None:
    headers = {} if accept is None else {"Accept": accept}
    response = await client.get("/--ping", headers=headers)
    assert response.status == 200


async def test_routing_errors_come_before_accept(client: Any) -> None:
    response = await client.get("/no/such/path", headers={"Accept": "text/html"})
    assert response.status == 404
    response = await client.put("/--ping", headers={"Accept": "text/html"})
    assert response.status == 405


async def test_405_carries_restifys_code(client: Any) -> None:
    response = await client.put("/--ping")
    assert response.status == 405
    assert await response.json() == {
        "code": "MethodNotAllowedError",
        "message": "PUT is not allowed",
    }
    assert response.headers["Allow"] == "GET, HEAD"


async def test_a_text_plain_body_is_415_not_ignored(echo: Any) -> None:
    """restify would drop the body and run on the query string alone; the gateway refuses it
    rather than run an action without parameters the client sent (docs/compatibility.md)."""
    response = await echo.request(
        "POST",
        _echo_path(echo, "from-query"),
        headers={"Content-Type": "text/plain"},
        data=b"word=from-body",
    )
    assert response.status == 415
    assert (await response.json())["code"] == "UnsupportedMediaType"


async def test_cloudapis_body_cap_can_be_configured(app_client: Any, caller_factory: Any) -> None:
    """``max_body_size = 100000`` is CloudAPI's cap (restify's ``maxBodySize``)."""
    client = await app_client(plugins=(EchoPlugin(),), max_body_size=100_000)
    alice = await caller_factory(client, "alice")
    image = await import_image(client.server.app, alice.account, b"cap")
    path = f"/my/images/{image.uuid}"
    head = b'{"action":"echo","word":"x"'
    for size, status in ((100_000, 200), (100_001, 413)):
        body = head + b" " * (size - len(head) - 1) + b"}"  # JSON whitespace pads it
        assert len(body) == size
        response = await alice.request(
            "POST", path, headers={"Content-Type": "application/json"}, data=body
        )
        assert response.status == status, size


# --- item 16: the clock skew of a signed Date ---------------------------------------------------


@pytest.mark.parametrize(
    ("skew", "age", "status"), [(300, 200, 200), (60, 200, 400), (60, 30, 200)]
)
async def test_the_clock_skew_is_a_setting(
    app_client: Any, caller_factory: Any, skew: int, age: int, status: int
) -> None:
    client = await app_client(clock_skew=skew)
    alice = await caller_factory(client, "alice")
    date = formatdate(time() - age, usegmt=True)
    response = await alice.request("GET", "/my/images", headers={"Date": date})
    assert response.status == status, await response.text()
    if status == 400:
        body = await response.json()
        assert body["code"] == "InvalidHeader"
        assert f"greater than {skew}s" in body["message"]


async def test_a_date_from_the_future_is_skew_too(app_client: Any, caller_factory: Any) -> None:
    client = await app_client(clock_skew=60)
    alice = await caller_factory(client, "alice")
    response = await alice.request(
        "GET", "/my/images", headers={"Date": formatdate(time() + 200, usegmt=True)}
    )
    assert response.status == 400
    assert (await response.json())["code"] == "InvalidHeader"
