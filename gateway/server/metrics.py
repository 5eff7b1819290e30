"""Prometheus metrics: one registry per app (tests build many apps in one process).

``Metrics`` is the host's ``gateway.telemetry.Events``: plugins report storage requests and
exports to it through ``events()``; the host itself counts completed requests and
authentication failures. ``gateway.server.metrics_http`` serves it and sets it per request.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
)
from prometheus_client.exposition import choose_encoder

from gateway import __version__
from gateway.telemetry import Events

#: Request durations: from a ping to an hour-long export.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
EXPORT_BUCKETS = (0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)


class Metrics(Events):
    """Every metric of one app, in a registry of its own (tests build many apps)."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        build = Gauge(
            "cloudapi_gateway_build_info",
            "The running gateway's version (always 1).",
            ["version"],
            registry=registry,
        )
        build.labels(version=__version__).set(1)
        self.requests = Counter(
            "http_requests_completed",
            "HTTP requests answered, by CloudAPI operation, method and status.",
            ["route", "method", "status_code"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "http_request_duration_seconds",
            "Seconds from a request's arrival to the end of its answer.",
            ["route"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.exports = Counter(
            "cloudapi_gateway_exports",
            "Exports ended, by outcome: ok, or the error code answered.",
            ["outcome"],
            registry=registry,
        )
        self.exports.labels(outcome="ok")
        self.export_bytes = Counter(
            "cloudapi_gateway_export_bytes",
            "Image file bytes written by exports that succeeded.",
            registry=registry,
        )
        self.export_seconds = Histogram(
            "cloudapi_gateway_export_duration_seconds",
            "Seconds each export took, whatever its outcome.",
            buckets=EXPORT_BUCKETS,
            registry=registry,
        )
        self.exports_in_flight = Gauge(
            "cloudapi_gateway_exports_in_flight",
            "Exports running now.",
            registry=registry,
        )
        self.storage_requests = Counter(
            "cloudapi_gateway_storage_requests",
            "Storage request attempts, by target kind, operation and outcome (ok, retried, error).",
            ["target", "operation", "outcome"],
            registry=registry,
        )
        self.storage_retries = Counter(
            "cloudapi_gateway_storage_retries",
            "Storage requests tried again after a transient failure.",
            ["target"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "cloudapi_gateway_auth_failures",
            "Requests refused by authentication, by error code.",
            ["code"],
            registry=registry,
        )

    # --- gateway.telemetry.Events ----------------------------------------------------------

    def storage_request(self, target: str, operation: str, outcome: str) -> None:
        self.storage_requests.labels(target=target, operation=operation, outcome=outcome).inc()

    def storage_retry(self, target: str) -> None:
        self.storage_retries.labels(target=target).inc()

    def export_started(self) -> None:
        self.exports_in_flight.inc()

    def export_finished(self, outcome: str, size: int, seconds: float) -> None:
        self.exports_in_flight.dec()
        self.exports.labels(outcome=outcome).inc()
        if size:
            self.export_bytes.inc(size)
        self.export_seconds.observe(seconds)

    # --- the host's own --------------------------------------------------------------------

    def auth_failure(self, code: str) -> None:
        self.auth_failures.labels(code=code).inc()

    def request_completed(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route=route, method=method, status_code=str(status)).inc()
        self.request_seconds.labels(route=route).observe(seconds)

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The registry in the format ``accept`` asks for (text 0.0.4 or OpenMetrics)."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type
