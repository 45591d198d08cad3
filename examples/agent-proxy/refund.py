"""What both patterns share: the refund of the reference workflow, a scripted stand-in for
the LLM, and the two tools. The sensitive tool appends one line per refund to a ledger file,
so a run can prove it refunded exactly once, and only after approval."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ORDER = "ord_881"
EVIDENCE = ("kg:order:ord_881#snapshot_kg_2026_05_03_T0930",)
ToolCall = dict[str, Any]  # {"id", "name", "args"}, as an LLM emits it


def envelope(request_id: str) -> dict[str, Any]:
    """The refund request envelope (InvokeAgent); request_id makes it idempotent."""
    return {
        "request_id": request_id,
        "session_id": "sess_42f1",
        "tenant_id": "tenant_acme_prod",
        "user": {
            "user_id": "usr_771",
            "delegation": {"auth_type": "oauth2", "scopes": ["orders.read", "payments.refund"]},
        },
        "agent": {
            "agent_id": "agt_support",
            "workload_identity": "spiffe://contextos/agents/support",
        },
        "context_pack_refs": ["ctxpack.support@5.2.0"],
        "input": {
            "intent": "support.refund",
            "message": f"Refund order {ORDER} for INR 4200.",
            "channel": "app_chat",
            "locale": "en-IN",
            "context": {"identity_verified": True, "order_id": ORDER, "refund_amount": 4200},
        },
        "mode": "MODE_STREAM",
        "runtime": {"max_tool_calls": 8, "max_cost_cents": 25.0},
    }


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex[:12]}"


def scripted_llm(results: Sequence[Mapping[str, Any]]) -> ToolCall | str:
    """The stand-in for the model (deterministic, offline): the next tool call given the
    tool results so far, or the final answer."""
    if not results:
        return {"id": "call_lookup_1", "name": "lookup_order", "args": {"order_id": ORDER}}
    if len(results) == 1:
        order = results[0]
        args = {"order_id": order["order_id"], "amount": order["amount"], "currency": "INR"}
        return {"id": "call_refund_1", "name": "issue_refund", "args": args}
    return f"Refund of {ORDER}: {results[-1]['status']}"


def lookup_order(params: Mapping[str, Any], action_id: str, ledger: Path) -> dict[str, Any]:
    """adp_orders.lookup (read-only)."""
    return {"order_id": params["order_id"], "amount": 4200, "status": "delivered"}


def issue_refund(params: Mapping[str, Any], action_id: str, ledger: Path) -> dict[str, Any]:
    """adp_payments.issue_refund (destructive): one ledger line per refund.

    A real payment API would take `action_id` as its idempotency key, which also covers a
    crash between paying and reporting to signoff."""
    line = json.dumps({"action_id": action_id, **params}, sort_keys=True) + "\n"
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return {"status": "refunded", "transaction_id": f"txn_{action_id[-8:]}"}


@dataclass(frozen=True)
class Tool:
    name: str  # signoff's "adapter.capability"
    risk_class: str
    run: Callable[[Mapping[str, Any], str, Path], dict[str, Any]]
    evidence_refs: tuple[str, ...] = ()


TOOLS = {
    "lookup_order": Tool("adp_orders.lookup", "READ_ONLY", lookup_order),
    "issue_refund": Tool("adp_payments.issue_refund", "DESTRUCTIVE", issue_refund, EVIDENCE),
}
