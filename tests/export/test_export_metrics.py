"""What an export, a failed export and a refused caller add to ``/metrics``, exactly.

``/metrics`` is scraped over HTTP from the app's metrics listener and parsed with
prometheus-client's own parser; each test compares two scrapes. The storage counters are also
checked against what the fake Manta itself received (its fault rules count the requests they
see), so they count real requests, not guesses.
"""

from __future__ import annotations

import random

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from fake_manta.faults import FaultRule
from gateway.server.appkeys import METRICS_ADDRESS
from tests.support.export_env import ExportEnv
from tests.support.storage_targets import RETRIES

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
#: Series whose value is a clock reading or a float sum, not a count.
NOT_COUNTS = ("process_", "python_")


async def scrape(env: ExportEnv) -> Samples:
    """Every sample of the app's ``/metrics``, keyed by name and sorted labels."""
    host, port = env.app[METRICS_ADDRESS]
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{host}:{port}/metrics") as response,
    ):
        assert response.status == 200
        text = await response.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def delta(before: Samples, after: Samples) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """What changed between two scrapes, counts only (no timestamps, sums or buckets)."""
    changed = {}
    for key, value in after.items():
        name = key[0]
        if name.startswith(NOT_COUNTS) or name.endswith(("_created", "_sum", "_bucket")):
            continue
        if value != before.get(key, 0.0):
            changed[key] = value - before.get(key, 0.0)
    return changed


def storage(operation: str, outcome: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    labels = (("operation", operation), ("outcome", outcome), ("target", "manta"))
    return ("cloudapi_gateway_storage_requests_total", labels)


def counting(env: ExportEnv) -> dict[str, FaultRule]:
    """Fault rules that change nothing and count every request the fake Manta gets."""
    return {
        method: env.harness.faults.add(method=method, path=r"^/", stall=0, times=None)
        for method in ("HEAD", "GET", "PUT", "DELETE")
    }


EXPORT_ROUTE = (("route", "exportimage"),)
EXPORTS_IN_FLIGHT = ("cloudapi_gateway_exports_in_flight", ())


async def test_an_export_and_a_failed_export(manta_env: ExportEnv) -> None:
    env = manta_env
    data = random.Random(31).randbytes(5000)
    image = await env.image(data)

    seen = counting(env)
    before = await scrape(env)
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 200, answer.body
    after = await scrape(env)
    # Four HEADs (the destination, its parent, the file and the manifest), two PUTs.
    assert {method: rule.hits for method, rule in seen.items()} == {
        "HEAD": 4,
        "GET": 0,
        "PUT": 2,
        "DELETE": 0,
    }
    assert delta(before, after) == {
        ("cloudapi_gateway_exports_total", (("outcome", "ok"),)): 1,
        ("cloudapi_gateway_export_bytes_total", ()): 5000,
        ("cloudapi_gateway_export_duration_seconds_count", ()): 1,
        storage("head", "ok"): 4,
        storage("put", "ok"): 2,
        (
            "http_requests_completed_total",
            (("method", "POST"), *EXPORT_ROUTE, ("status_code", "200")),
        ): 1,
        ("http_request_duration_seconds_count", EXPORT_ROUTE): 1,
    }
    assert after[EXPORTS_IN_FLIGHT] == 0

    # The image file's PUT fails on every attempt: RETRIES retries, then the error.
    env.harness.faults.reset()
    refused = env.harness.faults.add(method="PUT", path=r"\.zfs$", status=503, times=RETRIES + 1)
    seen = counting(env)
    answer = await env.export(image.uuid, env.path("img2"))
    assert answer.status == 503, answer.body
    assert answer.body["code"] == "StorageIsDown"
    failed = await scrape(env)
    assert refused.hits == RETRIES + 1
    heads = seen["HEAD"].hits
    assert {method: rule.hits for method, rule in seen.items()} == {
        "HEAD": heads,
        "GET": 0,
        "PUT": 0,  # every PUT met the refusing rule first
        "DELETE": 0,
    }
    assert delta(after, failed) == {
        ("cloudapi_gateway_exports_total", (("outcome", "StorageIsDown"),)): 1,
        ("cloudapi_gateway_export_duration_seconds_count", ()): 1,
        storage("head", "ok"): heads,
        storage("put", "retried"): RETRIES,
        storage("put", "error"): 1,
        ("cloudapi_gateway_storage_retries_total", (("target", "manta"),)): RETRIES,
        (
            "http_requests_completed_total",
            (("method", "POST"), *EXPORT_ROUTE, ("status_code", "503")),
        ): 1,
        ("http_request_duration_seconds_count", EXPORT_ROUTE): 1,
    }
    assert failed[EXPORTS_IN_FLIGHT] == 0


async def test_refused_callers_are_counted_by_code(manta_env: ExportEnv) -> None:
    env = manta_env
    image = await env.image(b"x" * 100)
    before = await scrape(env)
    path = f"/bob/images/{image.uuid}?action=export&manta_path={env.path('img')}"
    unsigned = await env.client.post(path)
    assert unsigned.status == 401
    foreign = await env.export(image.uuid, env.path("img"), login="alice", url_login="bob")
    assert foreign.status == 403
    after = await scrape(env)
    failures = "cloudapi_gateway_auth_failures_total"
    completed = "http_requests_completed_total"
    # Refused before the action is known: the route is CloudAPI's UpdateImage.
    route = (("route", "updateimage"),)
    assert delta(before, after) == {
        (failures, (("code", "InvalidCredentials"),)): 1,
        (failures, (("code", "NotAuthorized"),)): 1,
        (completed, (("method", "POST"), *route, ("status_code", "401"))): 1,
        (completed, (("method", "POST"), *route, ("status_code", "403"))): 1,
        ("http_request_duration_seconds_count", route): 2,
    }


async def test_every_target_reports_its_requests(env: ExportEnv) -> None:
    kind = env.harness.storage["kind"]
    image = await env.image(b"y" * 3000)
    before = await scrape(env)
    answer = await env.export(image.uuid, env.path("img"))
    assert answer.status == 200, answer.body
    changed = delta(before, await scrape(env))
    requests = {
        dict(labels)["operation"]: value
        for (name, labels), value in changed.items()
        if name == "cloudapi_gateway_storage_requests_total"
    }
    assert requests and all(value > 0 for value in requests.values())
    outcomes = {
        (dict(labels)["target"], dict(labels)["outcome"])
        for (name, labels), _ in changed.items()
        if name == "cloudapi_gateway_storage_requests_total"
    }
    assert outcomes == {(kind, "ok")}
    assert changed[("cloudapi_gateway_exports_total", (("outcome", "ok"),))] == 1
    assert changed[("cloudapi_gateway_export_bytes_total", ())] == 3000
