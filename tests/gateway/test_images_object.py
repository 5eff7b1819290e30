"""``to_cloudapi_image`` on manifests the HTTP tests cannot import (placeholders, odd fields)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.catalog import Image
from gateway.server.image_view import to_cloudapi_image

BASE: dict[str, Any] = {
    "v": 2,
    "uuid": "0b5e7b0c-1111-4222-8333-944444444444",
    "owner": "930896af-bf8c-48d4-885c-6573a94b1853",
    "name": "img",
    "version": "1",
    "state": "failed",
    "disabled": False,
    "public": False,
    "type": "zone-dataset",
    "os": "smartos",
    "files": [],
    "urn": "sdc:sdc:img:1",
    "users": [{"name": "root"}],
    "billing_tags": ["x"],
    "channels": ["dev"],
    "origin": "1b5e7b0c-1111-4222-8333-944444444444",
}


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (
            {"code": "VmHasNoOrigin", "message": "no origin", "stack": "at x"},
            {"code": "VmHasNoOrigin", "message": "no origin"},
        ),
        (
            {"code": "ENOSPC", "message": "disk full"},
            {
                "code": "InternalError",
                "message": "an unexpected error occurred (Contact support for assistance.)",
            },
        ),
    ],
)
def test_error_is_reduced(error: dict[str, str], shown: dict[str, str]) -> None:
    obj = to_cloudapi_image(Image(manifest={**BASE, "error": error}, files=()), "9.0.0")
    assert obj["error"] == shown
    assert list(obj)[-2:] == ["origin", "error"]


def test_hidden_fields_and_star_version() -> None:
    obj = to_cloudapi_image(Image(manifest=BASE, files=()), "*")
    for hidden in ("uuid", "v", "disabled", "urn", "users", "billing_tags", "channels", "files"):
        assert hidden not in obj
    assert obj["type"] == "zone-dataset" and obj["owner"] == BASE["owner"]
    assert obj["requirements"] == {}
