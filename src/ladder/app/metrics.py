"""Prometheus text exposition of what a role counts, for /metrics on the dashboard and the admin page.

Roles count in plain numbers and know nothing of Prometheus; a page turns
its role's numbers into `Metric`s named by the conventions (`ladder_` first,
base units, `_total` on counters) and `exposition` writes them with the
official client's writer, so escaping and layout are the format's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.core import Metric as Family


@dataclass
class Metric:
    name: str  # counters without "_total": the writer adds it
    kind: str  # "counter" or "gauge"
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> Metric:
        self.samples.append((labels, value))
        return self


def counter(name: str, help: str, value: float | None = None) -> Metric:
    metric = Metric(name, "counter", help)
    return metric if value is None else metric.add(value)


def gauge(name: str, help: str, value: float | None = None) -> Metric:
    metric = Metric(name, "gauge", help)
    return metric if value is None else metric.add(value)


class _Snapshot:
    """What the registry collects: the registry needs only `collect()` of a collector."""

    def __init__(self, metrics: Iterable[Metric]):
        self.metrics = list(metrics)

    def collect(self) -> Iterator[Family]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for metric in self.metrics:
            names = sorted({k for labels, _ in metric.samples for k in labels})
            family = (CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily)(
                metric.name, metric.help, labels=names)
            for labels, value in metric.samples:
                family.add_metric([labels.get(k, "") for k in names], value)
            yield family


def exposition(metrics: Iterable[Metric]) -> tuple[bytes, str]:
    """The text of `metrics` and its content type (the writer's version of the format)."""
    # Imported here, not at the top: prometheus_client (with http.server, wsgiref, threading) costs
    # each role's process ~2 MB and ~15 ms at start, and only a scrape of /metrics needs it.
    from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(metrics))  # a collector by its shape (collect), not by its class
    return generate_latest(registry), CONTENT_TYPE_LATEST
