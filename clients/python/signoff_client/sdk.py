"""The signoff SDK: ask before acting, and wait for humans without polling.

`AsyncSignoff` (grpc.aio) and `Signoff` (blocking grpc) wrap the generated grpcio stubs.
The heart is `request_decision`: it asks signoff whether an action may run and, when a
human must decide, waits on the resumable WatchInstance stream, reconnecting with capped
exponential backoff and jitter from the last revision received. It fails closed: only an
APPROVED answer from signoff returns normally; every other answer or error raises.

An APPROVED Decision carries the action's execution grant (`grant_token`, single use,
valid until `grant_expire_time`). Spend it once: with `consume_grant` right before the tool
runs, or with the `report_execution` afterwards::

    decision = await signoff.request_decision(instance_id, tool_call_id=..., ...)
    outputs = run_tool(decision.params)
    await signoff.report_execution(
        decision.action_id, True, evidence_ref, outputs, grant_token=decision.grant_token
    )

One implementation: `AsyncSignoff` is written in `_async/client.py`, and `Signoff` is
generated from it (scripts/generate, with unasync), so the two cannot drift apart; both
use the helpers and the one `Backoff` of `_common.py`. Every call carries the current
OpenTelemetry span's `traceparent` when opentelemetry-api is installed (see
signoff_client.tracing).
"""

from signoff_client._async.client import AsyncSignoff
from signoff_client._common import (
    APPROVED,
    CHANNEL_OPTIONS,
    REJECTED,
    TERMINATED,
    WAITING_FOR_HUMAN,
    Backoff,
    Decision,
    WireMessage,
    json_numbers,
    plan_decision,
    proposed_action,
)
from signoff_client._sync.client import Signoff

__all__ = [
    "APPROVED",
    "CHANNEL_OPTIONS",
    "REJECTED",
    "TERMINATED",
    "WAITING_FOR_HUMAN",
    "AsyncSignoff",
    "Backoff",
    "Decision",
    "Signoff",
    "WireMessage",
    "json_numbers",
    "plan_decision",
    "proposed_action",
]
