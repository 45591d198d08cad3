"""signoff client: the hand-written SDK over the generated stubs.

Ask before every sensitive action, and wait for humans through a resumable stream::

    async with AsyncSignoff.connect("127.0.0.1:50051") as signoff:
        instance = await signoff.invoke_agent(envelope)
        decision = await signoff.request_decision(
            instance.instance_id, tool_call_id="tc_121", tool="adp_payments.issue_refund",
            params={"order_id": "ord_881", "amount": 4200}, risk_class="DESTRUCTIVE",
        )
        outputs = run_tool(decision.params)  # the params signoff approved, not a local copy
        await signoff.report_execution(  # the grant of the approval: it executes once
            decision.action_id, True, "tool:issue_refund:tc_121", outputs,
            grant_token=decision.grant_token,
        )

Generated code: grpcio stubs in `signoff.v1`, betterproto2 in `signoff_client.betterproto`
(the SDK takes betterproto2 messages too). Framework adapters (LangGraph, callbacks, OpenAI
Agents SDK) live in `signoff_client.adapters`, imported only when used.
"""

from signoff_client.errors import (
    ActionRejected,
    AlreadyDecided,
    DecisionTimeout,
    ErrorReason,
    FieldViolation,
    InstanceTerminated,
    SignoffError,
    from_rpc_error,
)
from signoff_client.sdk import (
    APPROVED,
    CHANNEL_OPTIONS,
    REJECTED,
    TERMINATED,
    WAITING_FOR_HUMAN,
    AsyncSignoff,
    Backoff,
    Decision,
    Signoff,
    WireMessage,
    plan_decision,
    proposed_action,
)

__all__ = [
    "APPROVED",
    "CHANNEL_OPTIONS",
    "REJECTED",
    "TERMINATED",
    "WAITING_FOR_HUMAN",
    "ActionRejected",
    "AlreadyDecided",
    "AsyncSignoff",
    "Backoff",
    "Decision",
    "DecisionTimeout",
    "ErrorReason",
    "FieldViolation",
    "InstanceTerminated",
    "Signoff",
    "SignoffError",
    "WireMessage",
    "from_rpc_error",
    "plan_decision",
    "proposed_action",
]
