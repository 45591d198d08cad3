"""The log line of every committed state transition, and the trace id log lines carry.
(One line per call is written by api/calls.py; `signoff serve` picks JSON or text.)"""

import logging
from collections.abc import Iterable
from typing import Any

from opentelemetry import trace

from signoff.domain.models import Event

transitions = logging.getLogger("signoff.transitions")


def current_trace_id() -> str:
    """The trace id of the current OpenTelemetry span, or "" when there is none."""
    span = trace.get_current_span().get_span_context()
    return trace.format_trace_id(span.trace_id) if span.is_valid else ""


def log_transitions(events: Iterable[Event]) -> None:
    """One INFO line per event of a transaction that committed. Ids and states only: never
    the reason (free text that can quote customer data), params, outputs or tokens."""
    if not transitions.isEnabledFor(logging.INFO):
        return
    current = current_trace_id()
    for event in events:
        fields: dict[str, Any] = {
            "event": event.type.value,
            "tenant_id": event.tenant_id,
            "instance_id": event.instance_id,
            "revision": event.revision,
            "instance_state": event.instance_state.value,
            "action_id": event.action_id,
            "action_state": event.action_state.value if event.action_state else "",
            "tool": event.tool,
            "gate_id": event.gate_id,
            "actor": event.actor,
            # The trace the event belongs to (the agent's, stored with it), else this call's.
            "trace_id": event.trace_id or current,
        }
        transitions.info(
            "%s %s#%d",
            event.type.value,
            event.instance_id,
            event.revision,
            extra={key: value for key, value in fields.items() if value != ""},
        )
