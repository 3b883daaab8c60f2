"""Prometheus metrics every service process exposes on /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HANDLED = Counter("raccrochage_events_handled_total", "events handled and committed", ["consumer", "type"])
FAILED = Counter(
    "raccrochage_events_failed_total", "handler failures (will be retried)", ["consumer", "kind"]
)
REDELIVERED = Counter("raccrochage_events_redelivered_total", "deliveries after the first", ["consumer"])
DEADLETTERED = Counter("raccrochage_events_deadlettered_total", "messages sent to DEADLETTER", ["consumer"])
BATCH_SECONDS = Histogram("raccrochage_batch_seconds", "time to handle one fetched batch", ["consumer"])
CONSUMER_PENDING = Gauge("raccrochage_consumer_pending", "messages not yet delivered (lag)", ["consumer"])
CONSUMER_ACK_PENDING = Gauge("raccrochage_consumer_ack_pending", "delivered, not yet acked", ["consumer"])
OUTBOX_BACKLOG = Gauge("raccrochage_outbox_backlog", "committed events not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "raccrochage_outbox_oldest_age_seconds",
    "age of the oldest committed event not yet published",
    ["service"],
)
