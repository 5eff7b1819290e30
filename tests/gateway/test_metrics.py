"""The metrics listener: what it exposes, its labels, one registry per app, and ``listen``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from gateway import __version__
from gateway.server.app import create_app
from gateway.server.appkeys import METRICS_ADDRESS
from gateway.server.plugin_manager import ConfigurationError
from gateway.settings import Settings


async def families(app: Any) -> dict[str, Any]:
    """The app's ``/metrics``, parsed, by family name (counters lose ``_total`` here)."""
    host, port = app[METRICS_ADDRESS]
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{host}:{port}/metrics") as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await response.text()
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(family: Any, name: str, **labels: str) -> float:
    found = [s.value for s in family.samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, family.samples)
    return float(found[0])


async def test_every_family_is_exposed(tmp_path: Path, aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(Settings(data_dir=tmp_path)))
    found = await families(client.app)
    expected = {
        "http_requests_completed": "counter",
        "http_request_duration_seconds": "histogram",
        "cloudapi_gateway_build_info": "gauge",
        "cloudapi_gateway_exports": "counter",
        "cloudapi_gateway_export_bytes": "counter",
        "cloudapi_gateway_export_duration_seconds": "histogram",
        "cloudapi_gateway_exports_in_flight": "gauge",
        "cloudapi_gateway_storage_requests": "counter",
        "cloudapi_gateway_storage_retries": "counter",
        "cloudapi_gateway_auth_failures": "counter",
        "process_cpu_seconds": "counter",  # the process collector
        "process_resident_memory_bytes": "gauge",
    }
    assert {name: found[name].type for name in expected} == expected
    build = found["cloudapi_gateway_build_info"]
    assert value(build, "cloudapi_gateway_build_info", version=__version__) == 1
    exports = found["cloudapi_gateway_exports"]
    assert value(exports, "cloudapi_gateway_exports_total", outcome="ok") == 0


async def test_requests_are_labelled_by_operation(tmp_path: Path, aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(Settings(data_dir=tmp_path)))
    assert (await client.get("/--ping")).status == 200
    assert (await client.get("/--ping")).status == 200
    assert (await client.get("/bob/images/0b9b7c1a-8d1c-4c3e-9a29-4a0f3c2b3a11")).status == 401
    assert (await client.get("/no/such/path/3f6e")).status == 404
    found = await families(client.app)
    completed = found["http_requests_completed"]
    samples = {
        (s.labels["route"], s.labels["method"], s.labels["status_code"]): s.value
        for s in completed.samples
        if s.name == "http_requests_completed_total"
    }
    assert samples == {
        ("ping", "GET", "200"): 2,
        ("getimage", "GET", "401"): 1,
        ("unknown", "GET", "404"): 1,  # never the path itself
    }
    durations = found["http_request_duration_seconds"]
    assert value(durations, "http_request_duration_seconds_count", route="ping") == 2
    failures = found["cloudapi_gateway_auth_failures"]
    assert value(failures, "cloudapi_gateway_auth_failures_total", code="InvalidCredentials") == 1


async def test_each_app_counts_its_own(tmp_path: Path, aiohttp_client: Any) -> None:
    one = await aiohttp_client(create_app(Settings(data_dir=tmp_path / "one")))
    two = await aiohttp_client(create_app(Settings(data_dir=tmp_path / "two")))
    assert one.app[METRICS_ADDRESS] != two.app[METRICS_ADDRESS]
    for _ in range(3):
        await one.get("/--ping")
    await two.get("/--ping")
    name = "http_requests_completed_total"
    labels = {"route": "ping", "method": "GET", "status_code": "200"}
    first = (await families(one.app))["http_requests_completed"]
    second = (await families(two.app))["http_requests_completed"]
    assert (value(first, name, **labels), value(second, name, **labels)) == (3, 1)


async def test_an_empty_listen_serves_no_metrics(tmp_path: Path, aiohttp_client: Any) -> None:
    settings = Settings(data_dir=tmp_path, metrics={"listen": ""})
    client = await aiohttp_client(create_app(settings))
    assert METRICS_ADDRESS not in client.app
    assert (await client.get("/--ping")).status == 200  # still counted, just not served


async def test_a_taken_address_stops_the_start(tmp_path: Path, aiohttp_client: Any) -> None:
    first = await aiohttp_client(create_app(Settings(data_dir=tmp_path / "one")))
    host, port = first.app[METRICS_ADDRESS]
    second = TestServer(
        create_app(Settings(data_dir=tmp_path / "two", metrics={"listen": f"{host}:{port}"}))
    )
    with pytest.raises(ConfigurationError, match=rf"cannot serve metrics on {host}:{port}"):
        await second.start_server()
    await second.close()
