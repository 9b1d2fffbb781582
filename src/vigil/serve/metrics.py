"""The pipeline's own figures for `/metrics` (Prometheus): events in and set aside, alerts,
lag, intake refusals and API requests. Stage figures (lag and rate per stage) come from
`vigil.serve.stages.StageCollector`."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge


@dataclass
class PipelineMetrics:
    events_in: Counter
    events_rejected: Counter
    alerts: Counter
    lag: Gauge
    queue_depth: Gauge
    overloaded: Counter
    http_requests: Counter


def pipeline_metrics(registry: CollectorRegistry) -> PipelineMetrics:
    return PipelineMetrics(
        events_in=Counter("vigil_events_in", "Events received", ["source"], registry=registry),
        events_rejected=Counter(
            "vigil_events_rejected", "Events set aside", ["reason"], registry=registry
        ),
        alerts=Counter("vigil_alerts", "Alerts raised", ["kind", "level"], registry=registry),
        lag=Gauge(
            "vigil_pipeline_lag_events", "Events received, not yet processed", registry=registry
        ),
        queue_depth=Gauge(
            "vigil_queue_depth", "Events waiting in the intake log", registry=registry
        ),
        overloaded=Counter(
            "vigil_ingest_overloaded", "Ingest requests refused (overload)", registry=registry
        ),
        http_requests=Counter(
            "vigil_http_requests", "API requests", ["route", "status"], registry=registry
        ),
    )
