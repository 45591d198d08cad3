"""A ``(tool_name, args) -> bool`` for engines that call back before each tool.

::

    allow = signoff_callback(signoff, instance.instance_id,
                             risk_classes={"issue_refund": "DESTRUCTIVE", "lookup": "READ_ONLY"})
    engine.run(before_tool_call=allow)          # the engine runs a tool only when allow() is True

The callback asks signoff and, when a human must decide, blocks on the WatchInstance stream
(sync client) until the decision or `timeout`. It answers True only when signoff APPROVED
exactly these args, the approval was not used yet, and it consumed the approval's grant
(ConsumeGrant: the action is now EXECUTING, so no other call, even under the same key, is
allowed it again); REJECTED, TERMINATED, a timeout and any error answer False (fail
closed). Tools missing from `risk_classes` are asked as `default_risk_class` (DESTRUCTIVE:
a human decides). Every call is a new request unless `key` derives a stable tool_call_id
from the engine's own call id; approvals are never cached. Allowed decisions are kept in
`approved`, so the host can report executions; their grants are spent already, so the
report needs no token::

    client.report_execution(allow.approved[-1].action_id, True, "tool:issue_refund")
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from signoff_client.sdk import APPROVED, Decision, Signoff

__all__ = ["SignoffCallback", "signoff_callback"]

log = logging.getLogger(__name__)


class SignoffCallback:
    """Callable ``(tool_name, args) -> bool``; see `signoff_callback`."""

    def __init__(
        self,
        client: Signoff,
        instance_id: str,
        risk_classes: Mapping[str, str | int],
        *,
        namespace: str = "agent",
        default_risk_class: str | int = "DESTRUCTIVE",
        timeout: float | None = None,
        key: Callable[[str, Mapping[str, Any]], str] | None = None,
    ) -> None:
        self.client = client
        self.instance_id = instance_id
        self.risk_classes = dict(risk_classes)
        self.namespace = namespace
        self.default_risk_class = default_risk_class
        self.timeout = timeout
        self.key = key or (lambda tool_name, args: f"cb_{uuid.uuid4().hex}")
        self.approved: list[Decision] = []

    def tool(self, tool_name: str) -> str:
        """signoff's "adapter.capability" name: `tool_name`, prefixed when it has no dot."""
        return tool_name if "." in tool_name else f"{self.namespace}.{tool_name}"

    def __call__(self, tool_name: str, args: Mapping[str, Any]) -> bool:
        try:
            params = json.loads(json.dumps(dict(args)))  # what signoff stores and approves
            decision = self.client.request_decision(
                self.instance_id,
                tool_call_id=self.key(tool_name, args),
                tool=self.tool(tool_name),
                params=params,
                risk_class=self.risk_classes.get(tool_name, self.default_risk_class),
                timeout=self.timeout,
            )
        except Exception as error:  # noqa: BLE001 - every failure means "not allowed"
            log.warning("signoff did not allow %s: %s", tool_name, error)
            return False
        allowed = decision.outcome == APPROVED and not decision.consumed
        if not allowed or decision.params != params:
            log.warning("signoff did not allow %s as called (%s)", tool_name, decision.action_id)
            return False
        try:  # the engine runs the tool as soon as this returns True: spend the grant now
            self.client.consume_grant(decision.action_id, decision.grant_token)
        except Exception as error:  # noqa: BLE001 - a grant not consumed means "not allowed"
            log.warning("signoff did not allow %s: %s", tool_name, error)
            return False
        self.approved.append(decision)
        return True


def signoff_callback(
    client: Signoff,
    instance_id: str,
    risk_classes: Mapping[str, str | int],
    *,
    namespace: str = "agent",
    default_risk_class: str | int = "DESTRUCTIVE",
    timeout: float | None = None,
    key: Callable[[str, Mapping[str, Any]], str] | None = None,
) -> SignoffCallback:
    """A ``(tool_name, args) -> bool`` that asks signoff and waits; False unless APPROVED.

    `risk_classes` maps the engine's tool names to signoff risk classes ("READ_ONLY",
    "DESTRUCTIVE", ...). Names without a dot become "<namespace>.<name>" for signoff."""
    return SignoffCallback(
        client,
        instance_id,
        risk_classes,
        namespace=namespace,
        default_risk_class=default_risk_class,
        timeout=timeout,
        key=key,
    )
