"""metrics.py: the role's numbers as Prometheus text, read back with the format's own parser, and the
content type the writer says it wrote (prometheus_client is imported only when a scrape asks)."""

from __future__ import annotations

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from ladder.app import metrics


def test_exposition_writes_counters_and_gauges_with_labels_and_says_its_content_type():
    moved = metrics.counter("ladder_test_bytes", "Bytes, by direction.")
    moved.add(5, direction="up").add(7, direction="down")
    body, kind = metrics.exposition([moved, metrics.gauge("ladder_test_up", "Up (1) or not.", 1)])
    assert kind == CONTENT_TYPE_LATEST
    samples = {(s.name, tuple(s.labels.items())): s.value
               for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    assert samples[("ladder_test_bytes_total", (("direction", "up"),))] == 5
    assert samples[("ladder_test_bytes_total", (("direction", "down"),))] == 7
    assert samples[("ladder_test_up", ())] == 1
