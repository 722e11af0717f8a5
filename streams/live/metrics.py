"""The worker's Prometheus metrics (served at ``/metrics`` with faust's own sensor metrics, one registry per app).

Names and labels are documented in docs/operations.md with the alerts worth setting on them. Counts are of what
was written and acknowledged (exactly-once: committed), so they equal what a reader of the output topics sees,
repeats after a crash aside (at-least-once).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from streams.charter import Charter
from streams.core import Output
from streams.topics import INTERNAL_TOPICS

# Lateness of an output after the breach it reports: a second is the promise (SPEC section 5), minutes mean a backlog.
LATENESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800, 3600, 86400)


class Metrics:
    """Counters, gauges and histograms of one worker, registered in ``registry``."""

    def __init__(self, charter: Charter, registry: CollectorRegistry) -> None:
        self.charter = charter
        self.registry = registry
        kw: dict[str, Any] = {"registry": registry}
        self.events = Counter("charter_events", "valid input events received, by input topic", ["topic"], **kw)
        self.dead_letters = Counter("charter_dead_letters", "messages sent to dead-letter, by the topic they came from",
                                    ["source_topic"], **kw)
        self.outputs = Counter("charter_outputs", "output records written, by output topic", ["topic"], **kw)
        self.compensations = Counter("charter_compensations", "compensations written", ["charter", "rule"], **kw)
        self.compensation_cents = Counter("charter_compensation_cents", "amount of the compensations written, cents",
                                          ["charter", "rule", "currency"], **kw)
        self.lateness = Histogram("charter_deadline_lateness_seconds",
                                  "wall clock at which an output was written minus the instant of the breach it "
                                  "reports (crossed_at; a KPI window: its close)", buckets=LATENESS_BUCKETS, **kw)
        self.catching_up = Gauge("charter_catching_up", "1 while the partition applies a backlog under event time",
                                 ["partition"], **kw)
        self.subscribers = Gauge("charter_state_subscribers", "subscribers in the partition's state", ["partition"],
                                 **kw)
        self.load_seconds = Histogram("charter_state_load_seconds", "time to load a partition's state from its "
                                      "changelog", buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), **kw)
        self.transactions_failed = Counter("charter_transactions_failed", "exactly-once transactions that failed "
                                           "(fenced or not); the partition is parked and a rebalance asked for", **kw)
        self.pauses = Counter("charter_merge_pauses", "input topic-partitions paused because the event-time merge "
                              "held CHARTER_MAX_BUFFERED of their events while waiting on another", **kw)
        self._kpi_close_s = (charter.hotline.answer_within / 1e6) if charter.hotline is not None else 0.0

    def written(self, outputs: list[Output], now_s: float) -> None:
        """Count outputs that have landed, and how late each came after its breach."""
        name = self.charter.name
        for topic, _, value in outputs:
            if topic in INTERNAL_TOPICS:
                continue  # forwarded to another task of ours (charter-elements), not an output
            self.outputs.labels(topic).inc()
            if topic == "compensation":
                rule = value["rule"]
                self.compensations.labels(name, rule).inc()
                self.compensation_cents.labels(name, rule, value["currency"]).inc(value["amount_cents"])
            crossed = value.get("crossed_at")
            if crossed is not None:
                self.lateness.observe(max(0.0, now_s - datetime.fromisoformat(crossed).timestamp()))
            elif topic == "hotline-kpi":
                closed = datetime.fromisoformat(value["window_end"]).timestamp() + self._kpi_close_s
                self.lateness.observe(max(0.0, now_s - closed))

    def partition_state(self, partition: int | str, subscribers: int | None, catching_up: bool) -> None:
        label = str(partition)
        if subscribers is not None:
            self.subscribers.labels(label).set(subscribers)
        self.catching_up.labels(label).set(1 if catching_up else 0)

    def forget_partitions(self) -> None:
        """A rebalance: the gauges of partitions that are no longer ours must not linger."""
        self.subscribers.clear()
        self.catching_up.clear()
