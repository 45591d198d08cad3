"""Webhook notifications, the pure part: which change goes to which webhook, the payloads,
the signature and the retry delays. No I/O here (services/notifier.py does it).

A receiver verifies a request by recomputing

    Signoff-Signature: sha256=HEX(HMAC-SHA256(secret, f"{Signoff-Timestamp}.{body}"))

(signoff_client.webhooks.verify does it, and checks the timestamp's age against replays).
"""

import hashlib
import hmac
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from signoff.domain.models import ApprovalChange
from signoff.domain.states import ActionState, ApprovalChangeKind

DELIVERY_HEADER = "Signoff-Delivery"
EVENT_HEADER = "Signoff-Event"
TIMESTAMP_HEADER = "Signoff-Timestamp"
SIGNATURE_HEADER = "Signoff-Signature"
USER_AGENT = "signoff-webhooks/1"

# What a webhook may subscribe to; the first four are the default.
DEFAULT_EVENTS = ("requested", "decided", "expired", "escalated")
EVENTS = (*DEFAULT_EVENTS, "voted", "cancelled")

Format = Literal["json", "slack", "slack_interactive"]


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str
    secret: bytes = field(repr=False)
    format: Format = "json"
    tenants: frozenset[str] = frozenset()  # empty: every tenant
    gates: frozenset[str] = frozenset()  # empty: every gate
    events: frozenset[str] = frozenset(DEFAULT_EVENTS)


@dataclass(frozen=True)
class RetryPolicy:
    initial: float = 1.0  # seconds before the first retry; doubles each time
    maximum: float = 3600.0  # the longest wait between two attempts
    max_attempts: int = 36  # then the delivery is FAILED (about a day with the defaults)
    timeout: float = 10.0  # seconds one request may take, connect to last byte


def event_name(kind: ApprovalChangeKind) -> str:
    return kind.value.lower()


def event_type(kind: ApprovalChangeKind) -> str:
    """The `type` of a payload and the Signoff-Event header: approval.requested, …"""
    return f"approval.{event_name(kind)}"


def change_gates(change: ApprovalChange, action_gate_ids: Iterable[str]) -> list[str]:
    """The gates a change is about: the one it names (an escalation's new gate, the gate
    that expired, the gates a vote counted for), else every gate of the action."""
    if change.gate_id:
        return [gate for gate in change.gate_id.split(",") if gate]
    return list(action_gate_ids)


def may_want(webhook: Webhook, change: ApprovalChange) -> bool:
    """The filters that need nothing but the change (tenant and event)."""
    if webhook.tenants and change.tenant_id not in webhook.tenants:
        return False
    return event_name(change.kind) in webhook.events


def wants(webhook: Webhook, change: ApprovalChange, gates: Iterable[str]) -> bool:
    if not may_want(webhook, change):
        return False
    return not webhook.gates or bool(webhook.gates.intersection(gates))


def json_payload(delivery_id: str, change: ApprovalChange, gates: list[str]) -> dict[str, Any]:
    """What the change is, never what the action does: no params, evidence or reasons."""
    return {
        "delivery_id": delivery_id,
        "type": event_type(change.kind),
        "time": change.time.isoformat(),
        "tenant_id": change.tenant_id,
        "instance_id": change.instance_id,
        "action_id": change.action_id,
        "tool": change.tool,
        "gate_id": ",".join(gates),
        "gate_ids": gates,
        "action_state": change.action_state.value,
        "actor": change.actor,
        "cursor": change.cursor,
        "revision": change.revision,
    }


_SLACK_TITLES = {
    ApprovalChangeKind.REQUESTED: ":hourglass_flowing_sand: Approval needed",
    ApprovalChangeKind.ESCALATED: ":rotating_light: Approval escalated",
    ApprovalChangeKind.VOTED: ":ballot_box_with_ballot: Vote recorded",
    ApprovalChangeKind.DECIDED: ":white_check_mark: Approval decided",
    ApprovalChangeKind.EXPIRED: ":alarm_clock: Approval expired",
    ApprovalChangeKind.CANCELLED: ":no_entry_sign: Approval cancelled",
}


def _escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(change: ApprovalChange, gates: list[str]) -> dict[str, Any]:
    """A Slack incoming-webhook message (text for notifications, blocks for the channel)."""
    tool, gate = _escape(change.tool), _escape(", ".join(gates) or "-")
    title = _SLACK_TITLES[change.kind]
    waits = change.action_state is ActionState.WAITING_FOR_HUMAN
    if change.kind is ApprovalChangeKind.DECIDED:
        summary = f"`{tool}` was {change.action_state.value} by {_escape(change.actor)}"
    elif change.kind is ApprovalChangeKind.EXPIRED:
        summary = f"`{tool}` expired at {gate}: nobody decided in time"
    elif change.kind is ApprovalChangeKind.CANCELLED:
        summary = f"`{tool}` no longer waits at {gate}: the agent withdrew it"
    else:
        summary = f"`{tool}` waits for a decision at {gate}"
    fields = {
        "Tenant": change.tenant_id,
        "Gate": ", ".join(gates) or "-",
        "Instance": change.instance_id,
        "Action": change.action_id,
    }
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*: {summary}"}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{name}*\n`{_escape(value)}`"}
                for name, value in fields.items()
            ],
        },
    ]
    if waits:
        action = change.action_id
        blocks.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f'```signoff approve {action} --reason "..."\n'
                    f'signoff reject {action} --reason "..."```',
                },
            }
        )
    return {"text": f"{title}: {summary} ({_escape(change.tenant_id)})", "blocks": blocks}


def body(webhook: Webhook, delivery_id: str, change: ApprovalChange, gates: list[str]) -> str:
    """The request body, built once when the change commits: retries send the same bytes.
    (slack_interactive's is the JSON payload too: its sender renders the message from the
    action as it is when the message is posted or updated.)"""
    if webhook.format == "slack":
        payload = slack_payload(change, gates)
    else:
        payload = json_payload(delivery_id, change, gates)
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def headers(
    secret: bytes, delivery_id: str, event: str, timestamp: int, body: bytes
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        DELIVERY_HEADER: delivery_id,
        EVENT_HEADER: f"approval.{event}",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, timestamp, body),
    }


def retry_delay(
    attempt: int, policy: RetryPolicy, rand: Callable[[], float] = random.random
) -> float:
    """Seconds before the next try after `attempt` failed tries: doubling from `initial` up to
    `maximum`, each shortened by up to a quarter at random so that the retries of many
    deliveries (and replicas) do not all hit a receiver that comes back at the same moment."""
    delay = min(policy.maximum, policy.initial * 2 ** min(attempt - 1, 60))
    return delay * (1 - 0.25 * rand())
