"""Every Prometheus metric signoff exports, in one place (served by --metrics-port).

Names follow Prometheus conventions: a `signoff_` prefix, base units (seconds), `_total`
for counters. RPC metrics use the names of the gRPC ecosystem (grpc_server_*).
Counters and histograms count what this process did; gauges read from the database
(signoff_approvals_waiting) hold the value of the whole database, the same on every replica.
"""

from datetime import datetime

from prometheus_client import Counter, Gauge, Histogram

# Latency buckets from sub-millisecond RPCs to a day-long human wait.
_RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_WAIT_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 86400, 7 * 86400)

RPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
RPC_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "Time to handle an RPC (for streams: the stream's life), by method.",
    ["grpc_service", "grpc_method"],
    buckets=_RPC_BUCKETS,
)
APPROVALS_WAITING = Gauge(
    "signoff_approvals_waiting",
    "Actions waiting for a human decision, by gate still waiting (database-wide).",
    ["gate"],
)
DECISION_SECONDS = Histogram(
    "signoff_time_to_decision_seconds",
    "From a waiting action's request to its decision (approved, rejected or expired).",
    ["outcome"],
    buckets=_WAIT_BUCKETS,
)
APPROVALS_EXPIRED = Counter(
    "signoff_approvals_expired_total",
    "Gates not decided in time, by gate and what happened (expired or escalated).",
    ["gate", "result"],
)
WATCH_STREAMS = Gauge(
    "signoff_watch_streams_open",
    "Open watch streams on this server, by stream (instance or approvals).",
    ["stream"],
)
WATCH_PUSH_LAG = Histogram(
    "signoff_watch_push_lag_seconds",
    "From an event's commit to its send on a live watch stream.",
    buckets=_RPC_BUCKETS,
)
WEBHOOK_DELIVERIES = Counter(
    "signoff_webhook_deliveries_total",
    "Webhook delivery attempts, by webhook and result (delivered, retry, failed).",
    ["webhook", "result"],
)
WEBHOOK_LAG = Histogram(
    "signoff_webhook_delivery_lag_seconds",
    "From the change's commit to the webhook receiver's 2xx answer (notification lag).",
    ["webhook"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
WEBHOOK_PENDING = Gauge(
    "signoff_webhook_outbox_pending",
    "Webhook deliveries not yet delivered (read from the database).",
)


def record_decision(state: str, requested: datetime, decided: datetime) -> None:
    """A waiting action was decided (`state`: APPROVED, REJECTED or EXPIRED)."""
    DECISION_SECONDS.labels(state.lower()).observe((decided - requested).total_seconds())


def record_timeout(gate_id: str, result: str) -> None:
    """`gate_id` was not decided in time; `result`: "expired" or "escalated"."""
    APPROVALS_EXPIRED.labels(gate_id, result).inc()
