"""Action dispatch over HTTP: ``POST /:login/images/:id`` with query and JSON-body parameters."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from gateway import hookimpl
from gateway.server.app import create_app
from gateway.server.plugin_manager import PluginError
from gateway.settings import Settings
from tests.support.helpers import EchoAction, EchoPlugin, import_image

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def echo(app_client: Any, caller_factory: Any) -> Any:
    """alice on an app with the echo action, owning one image."""
    client = await app_client(plugins=(EchoPlugin(),))
    caller = await caller_factory(client, "alice")
    caller.image = await import_image(client.server.app, caller.account, b"image-bytes")
    return caller


def _path(caller: Any, query: str = "", login: str = "my") -> str:
    return f"/{login}/images/{caller.image.uuid}" + (f"?{query}" if query else "")


async def _error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["code"] == code, body
    return dict(body)


async def test_query_parameters_reach_the_action(echo: Any) -> None:
    resp = await echo.request("POST", _path(echo, "action=echo&word=hi"))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["params"] == {"action": "echo", "word": "hi"}
    assert body["image"] == echo.image.uuid
    assert body["login"] == "alice"
    assert body["storage"] is False


async def test_json_body_overrides_query(echo: Any) -> None:
    resp = await echo.request(
        "POST", _path(echo, "action=echo&word=query"), json={"word": "body", "mode": "a"}
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["params"] == {"action": "echo", "word": "body", "mode": "a"}


async def test_triton_style_body_only(echo: Any) -> None:
    resp = await echo.request(
        "POST",
        _path(echo),
        json={"action": "echo", "word": "x"},
        headers={"Accept-Version": "~9||~8"},
    )
    assert resp.status == 200
    assert (await resp.json())["api_version"] == "9.0.0"


async def test_smartdc_style_query_with_empty_json_body(echo: Any) -> None:
    resp = await echo.request(
        "POST",
        _path(echo, "action=echo&word=x"),
        data=b"{}",
        headers={"Content-Type": "application/json", "Accept-Version": "~7.2"},
    )
    assert resp.status == 200
    assert (await resp.json())["api_version"] == "7.2.0"


async def test_result_key_order_is_kept(echo: Any) -> None:
    resp = await echo.request("POST", _path(echo, "action=echo&word=x"))
    text = await resp.text()
    assert text.index('"zeta"') < text.index('"alpha"') < text.index('"params"')


async def test_login_in_path_works_like_my(echo: Any) -> None:
    resp = await echo.request("POST", _path(echo, "action=echo&word=x", login="alice"))
    assert resp.status == 200


async def test_form_body_is_accepted(echo: Any) -> None:
    resp = await echo.request(
        "POST",
        _path(echo),
        data="action=echo&word=form",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status == 200
    assert (await resp.json())["params"]["word"] == "form"


async def test_missing_action(echo: Any) -> None:
    body = await _error(await echo.request("POST", _path(echo)), 409, "MissingParameter")
    assert body["message"] == "action is a required argument"


async def test_empty_action(echo: Any) -> None:
    resp = await echo.request("POST", _path(echo, "action="))
    assert (await _error(resp, 409, "MissingParameter"))[
        "message"
    ] == "action is a required argument"


async def test_unknown_action(echo: Any) -> None:
    body = await _error(
        await echo.request("POST", _path(echo, "action=frobnicate")), 409, "InvalidArgument"
    )
    assert body["message"] == "action frobnicate is not a valid argument"


async def test_non_string_action_in_body(echo: Any) -> None:
    resp = await echo.request("POST", _path(echo), json={"action": ["echo"]})
    body = await _error(resp, 409, "InvalidArgument")
    assert "is not a valid argument" in body["message"]


async def test_missing_required_parameter_names_it(echo: Any) -> None:
    body = await _error(
        await echo.request("POST", _path(echo, "action=echo")), 409, "MissingParameter"
    )
    assert body["message"] == "word is a required argument"


async def test_schema_violation_names_the_field(echo: Any) -> None:
    resp = await echo.request("POST", _path(echo, "action=echo&word=waytoolongword"))
    body = await _error(resp, 409, "InvalidArgument")
    assert body["message"].startswith("word: ")


async def test_repeated_query_parameter_is_a_list_and_invalid(echo: Any) -> None:
    resp = await echo.request("POST", _path(echo, "action=echo&word=a&word=b"))
    assert (await _error(resp, 409, "InvalidArgument"))["message"].startswith("word: ")


async def test_format_is_checked(echo: Any) -> None:
    resp = await echo.request("POST", _path(echo, "action=echo&word=x&when=yesterday"))
    assert (await _error(resp, 409, "InvalidArgument"))["message"].startswith("when: ")
    ok = await echo.request("POST", _path(echo, "action=echo&word=x&when=2024-01-01"))
    assert ok.status == 200


async def test_custom_invalid_message(echo: Any) -> None:
    resp = await echo.request("POST", _path(echo, "action=echo&word=x&mode=c"))
    assert (await _error(resp, 409, "InvalidArgument"))["message"] == "mode must be a or b"


async def test_unexpected_parameter_is_named(echo: Any) -> None:
    resp = await echo.request("POST", _path(echo, "action=echo&word=x&colour=red"))
    assert (await _error(resp, 409, "InvalidArgument"))["message"] == (
        "colour is not a valid argument"
    )


async def test_malformed_json(echo: Any) -> None:
    resp = await echo.request(
        "POST",
        _path(echo),
        data=b'{"action": "echo",',
        headers={"Content-Type": "application/json"},
    )
    body = await _error(resp, 400, "InvalidContent")
    assert body["message"].startswith("Invalid JSON")


@pytest.mark.parametrize(
    "raw", [b"[1, 2]", b'"echo"', b"NaN", b"\xff\xfe", b"[" * 5000 + b"]" * 5000, b"null"]
)
async def test_json_that_is_not_an_object(echo: Any, raw: bytes) -> None:
    resp = await echo.request(
        "POST",
        _path(echo, "action=echo&word=x"),
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    await _error(resp, 400, "InvalidContent")


async def test_wrong_content_type(echo: Any) -> None:
    resp = await echo.request(
        "POST",
        _path(echo, "action=echo&word=x"),
        data=b"<xml/>",
        headers={"Content-Type": "application/xml"},
    )
    body = await _error(resp, 415, "UnsupportedMediaType")
    assert "application/xml" in body["message"]


async def test_body_too_large_by_content_length(app_client: Any, caller_factory: Any) -> None:
    client = await app_client(plugins=(EchoPlugin(),), max_body_size=64)
    caller = await caller_factory(client, "alice")
    image = await import_image(client.server.app, caller.account, b"x")
    payload = json.dumps({"action": "echo", "word": "x" * 100}).encode()
    resp = await caller.request(
        "POST",
        f"/my/images/{image.uuid}",
        data=payload,
        headers={"Content-Type": "application/json"},
    )
    await _error(resp, 413, "RequestTooLarge")


async def test_body_too_large_when_chunked(app_client: Any, caller_factory: Any) -> None:
    client = await app_client(plugins=(EchoPlugin(),), max_body_size=64)
    caller = await caller_factory(client, "alice")
    image = await import_image(client.server.app, caller.account, b"x")

    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 32

    resp = await caller.request(
        "POST",
        f"/my/images/{image.uuid}",
        data=chunks(),
        headers={"Content-Type": "application/json"},
    )
    await _error(resp, 413, "RequestTooLarge")


async def test_unknown_image_is_404_before_the_action_is_checked(echo: Any) -> None:
    resp = await echo.request("POST", "/my/images/00000000-0000-0000-0000-000000000000?action=nope")
    await _error(resp, 404, "ResourceNotFound")


async def test_someone_elses_private_image_is_404(echo: Any, caller_factory: Any) -> None:
    bob = await caller_factory(echo.client, "bob")
    resp = await bob.request("POST", _path(echo, "action=echo&word=x"))
    await _error(resp, 404, "ResourceNotFound")


async def test_unsigned_request_is_401(echo: Any) -> None:
    resp = await echo.request("POST", _path(echo, "action=echo&word=x"), sign=False)
    await _error(resp, 401, "InvalidCredentials")


async def test_other_login_in_path_is_refused(echo: Any, caller_factory: Any) -> None:
    await caller_factory(echo.client, "bob")
    resp = await echo.request("POST", _path(echo, "action=echo&word=x", login="bob"))
    await _error(resp, 403, "NotAuthorized")


async def test_action_crash_is_a_bare_500(echo: Any, caplog: pytest.LogCaptureFixture) -> None:
    resp = await echo.request(
        "POST", _path(echo, "action=echo&word=boom"), headers={"X-Request-Id": "crash-42"}
    )
    body = await _error(resp, 500, "InternalError")
    assert body == {"code": "InternalError", "message": "Internal Error"}
    assert "passwd" not in await resp.text()
    assert resp.headers["Request-Id"] == "crash-42"
    assert any("crash-42" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("?action=export", None),  # sdc-exportimage: the query, an empty body
        ("", {"action": "export"}),  # triton: a JSON body only
    ],
    ids=["smartdc-query", "triton-body"],
)
async def test_first_party_export_is_dispatched(
    caller: Any, query: str, body: dict[str, Any] | None
) -> None:
    image = await import_image(caller.app, caller.account, b"abc")
    resp = await caller.request("POST", f"/my/images/{image.uuid}{query}", json=body)
    assert await _error(resp, 409, "MissingParameter") == {
        "code": "MissingParameter",
        "message": "Image destination manta_path is a required argument",
    }


async def test_export_without_storage_is_storage_unsupported(caller: Any) -> None:
    image = await import_image(caller.app, caller.account, b"abc")
    resp = await caller.request(
        "POST", f"/my/images/{image.uuid}", json={"action": "export", "manta_path": "/alice/stor/x"}
    )
    await _error(resp, 503, "StorageUnsupported")


class NewerEcho(EchoAction):
    """The echo action, serving only API 8 and later (a plugin's ``api_versions``)."""

    name = "newecho"
    schema: Mapping[str, Any] = {**EchoAction.schema, "properties": {
        **EchoAction.schema["properties"], "action": {"const": "newecho"}
    }}  # fmt: skip
    api_versions = ">=8.0.0"


class NewerPlugin:
    @hookimpl
    def gateway_register_image_actions(self) -> list[Any]:
        return [NewerEcho()]


@pytest.fixture
async def newer(app_client: Any, caller_factory: Any) -> Any:
    client = await app_client(plugins=(NewerPlugin(),))
    caller = await caller_factory(client, "alice")
    caller.image = await import_image(client.server.app, caller.account, b"image-bytes")
    return caller


@pytest.mark.parametrize(
    ("accept", "served"), [("*", "9.0.0"), ("~8", "8.0.0"), ("~7||~8", "8.0.0"), (None, "9.0.0")]
)
async def test_an_action_is_served_within_its_versions(
    newer: Any, accept: str | None, served: str
) -> None:
    headers = {"Accept-Version": accept} if accept else {}
    resp = await newer.request("POST", _path(newer, "action=newecho&word=x"), headers=headers)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["api_version"] == served
    assert resp.headers["Api-Version"] == "9.0.0"  # CloudAPI's own, whatever was served


async def test_a_range_outside_the_actions_versions_is_invalid_version(newer: Any) -> None:
    resp = await newer.request(
        "POST", _path(newer, "action=newecho&word=x"), headers={"Accept-Version": "~7.2"}
    )
    body = await _error(resp, 400, "InvalidVersion")
    assert body["message"] == f"~7.2 is not supported by POST /my/images/{newer.image.uuid}"


@pytest.mark.parametrize("bad", ["~6", "not a range", 9])
async def test_an_action_whose_range_admits_no_version_stops_the_start(bad: Any) -> None:
    class Bad(NewerEcho):
        api_versions = bad

    class BadPlugin:
        @hookimpl
        def gateway_register_image_actions(self) -> list[Any]:
            return [Bad()]

    with pytest.raises(PluginError, match=r"has api_versions .* not a version range admitting"):
        create_app(Settings(), plugins=(BadPlugin(),))


async def test_import_from_datacenter_is_not_available_here(echo: Any) -> None:
    resp = await echo.request("POST", _path(echo, "action=import-from-datacenter&datacenter=x"))
    body = await _error(resp, 501, "NotImplemented")
    assert "no other datacenters" in body["message"]


async def test_create_image_from_machine_is_not_available_here(echo: Any) -> None:
    resp = await echo.request("POST", "/my/images", json={"machine": "x", "name": "n"})
    body = await _error(resp, 501, "NotImplemented")
    assert body["message"].startswith("CreateImageFromMachine is not available")


async def test_create_image_from_machine_authenticates_first(app_client: Any) -> None:
    client = await app_client()
    resp = await client.post("/alice/images", json={"machine": "x"})
    assert resp.status == 401
