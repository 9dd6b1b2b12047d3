"""Prometheus text exposition of what a role counts, for /metrics on the dashboard and the admin page.

Roles count in plain numbers and know nothing of Prometheus; a page turns
its role's numbers into `Metric`s named by the conventions (`ladder_` first,
base units, `_total` on counters) and `exposition` writes them with the
official client's writer, so escaping and layout are the format's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.core import Metric as Family
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

CONTENT_TYPE = CONTENT_TYPE_LATEST


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


class _Snapshot(Collector):
    def __init__(self, metrics: Iterable[Metric]):
        self.metrics = list(metrics)

    def collect(self) -> Iterator[Family]:
        for metric in self.metrics:
            names = sorted({k for labels, _ in metric.samples for k in labels})
            family = (CounterMetricFamily if metric.kind == "counter" else GaugeMetricFamily)(
                metric.name, metric.help, labels=names)
            for labels, value in metric.samples:
                family.add_metric([labels.get(k, "") for k in names], value)
            yield family


def exposition(metrics: Iterable[Metric]) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(metrics))
    return generate_latest(registry)
