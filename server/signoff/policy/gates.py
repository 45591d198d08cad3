"""Gate definitions: who may approve, how many must, how long it may wait, and what then."""

import re
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any


class OnTimeout(StrEnum):
    REJECT = "reject"  # the action EXPIRES; never recorded as a human rejection
    ESCALATE = "escalate"  # the action moves to escalate_to and keeps waiting


@dataclass(frozen=True)
class Gate:
    gate_id: str
    description: str = ""
    principals: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    quorum: int = 1
    # Distinct rejections that settle the action REJECTED (1: the first reject does).
    rejections_to_settle: int = 1
    ttl: timedelta = timedelta(hours=24)
    on_timeout: OnTimeout = OnTimeout.REJECT
    escalate_to: str = ""
    reminders: tuple[timedelta, ...] = ()

    def admits(self, principal_id: str, roles: frozenset[str]) -> bool:
        # "*" admits anyone: for development bundles, never for production gates.
        return principal_id in self.principals or "*" in self.principals or bool(self.roles & roles)


_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '24h', '7d'."""
    match = _DURATION.match(str(text).strip())
    if not match:
        raise ValueError(f"not a duration: {text!r} (use 90s, 15m, 24h or 7d)")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def gate_from_yaml(gate_id: str, spec: dict[str, Any]) -> Gate:
    approvers = spec.get("approvers") or {}
    unknown = set(spec) - {
        "description",
        "approvers",
        "quorum",
        "rejections_to_settle",
        "ttl",
        "on_timeout",
        "escalate_to",
        "reminders",
    }
    if unknown:
        raise ValueError(f"gate {gate_id}: unknown keys {sorted(unknown)}")
    gate = Gate(
        gate_id=gate_id,
        description=str(spec.get("description", "")),
        principals=frozenset(approvers.get("principals", [])),
        roles=frozenset(approvers.get("roles", [])),
        quorum=int(spec.get("quorum", 1)),
        rejections_to_settle=int(spec.get("rejections_to_settle", 1)),
        ttl=parse_duration(spec.get("ttl", "24h")),
        on_timeout=OnTimeout(spec.get("on_timeout", "reject")),
        escalate_to=str(spec.get("escalate_to", "")),
        reminders=tuple(parse_duration(r) for r in spec.get("reminders", [])),
    )
    if gate.quorum < 1 or gate.rejections_to_settle < 1:
        raise ValueError(f"gate {gate_id}: quorum and rejections_to_settle must be >= 1")
    if not gate.principals and not gate.roles:
        raise ValueError(f"gate {gate_id}: approvers must name principals or roles")
    for reminder in gate.reminders:
        if not timedelta(0) < reminder < gate.ttl:
            raise ValueError(
                f"gate {gate_id}: reminder {spec['reminders'][gate.reminders.index(reminder)]} "
                f"must come after the gate opens and before its ttl ({gate.ttl})"
            )
    if (gate.on_timeout is OnTimeout.ESCALATE) != bool(gate.escalate_to):
        raise ValueError(f"gate {gate_id}: on_timeout escalate needs escalate_to, and only it")
    return gate
