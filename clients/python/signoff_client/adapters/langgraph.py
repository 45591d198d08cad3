"""LangGraph: ask signoff inside a node, pause the graph while a human decides, resume it.

In the node that runs a sensitive tool (the graph needs a checkpointer and a thread_id)::

    decision = gate_tool_call(signoff, state["instance_id"], tool_call,
                              tool="adp_payments.issue_refund", risk_class="DESTRUCTIVE")
    if not decision.consumed:                   # a re-run after the report: already done
        outputs = issue_refund(**decision.params)   # the params signoff approved
        signoff.report_execution(decision.action_id, True, outputs=outputs,
                                 grant_token=decision.grant_token)   # the grant: used once

To run the tool at most once even if the process dies between the tool and the report,
spend the grant first: ``signoff.consume_grant(decision.action_id, decision.grant_token)``
(the action becomes EXECUTING, so a re-run sees it consumed), run, then report without a
token.

`gate_tool_call` returns only once signoff APPROVED the call and raises ActionRejected,
InstanceTerminated or SignoffError otherwise. While the action waits for a human it calls
`interrupt()`: the checkpoint keeps the pause and the process may exit. The approval key is
derived from the thread id and the tool call id, so re-running the node never creates a
second request. A resumer, possibly another process, waits through WatchInstance and
resumes the graph by interrupt id::

    command = resume_command(signoff, graph.get_state(config).interrupts)
    if command is not None:                     # None: nothing of signoff's is paused
        graph.invoke(command, config)

Resumers may race (a retried job, two workers): `claim_tool_call` spends the grant before
the tool runs and returns None to every resumer but one ("already executed"), and a
ToolNode needs no node code at all::

    tools = ToolNode([issue_refund], wrap_tool_call=tool_call_wrapper(
        signoff, {"issue_refund": "DESTRUCTIVE"}))   # instance id from state["instance_id"]

The wrapper asks, pauses, runs the tool with the params signoff approved (an approver's
edit included), reports, and answers the model with an error ToolMessage when signoff
rejected the call or it already ran.

The resume value only wakes the node: the node asks signoff again, and signoff's answer,
never the resume value, decides whether the tool runs.

To have a whole plan approved once, up front, instead of a pause per gated call, submit it
in the graph's first node (docs/plans.md)::

    def plan(state):
        answer = submit_plan(signoff, state["instance_id"], PLAN)   # pauses until approved
        return {"approved_steps": approved_steps(answer)}   # {step_id: {"tool", "params"}}

`submit_plan` interrupts the graph while the plan approval waits, exactly as a gated tool
call does (`resume_command` resumes it), and returns once it is approved (at once when no
step is gated); it raises ActionRejected or InstanceTerminated when the approval was
rejected, expired or cancelled. Afterwards each gated step's call, with the params in
`approved_steps` (an approver may have narrowed them), is APPROVED under the plan approval
at once: `gate_tool_call` and `tool_call_wrapper` return without pausing again.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from signoff.v1 import execution_service_pb2 as execution_pb
from signoff_client.adapters import stable_key
from signoff_client.errors import ActionRejected, ErrorReason, InstanceTerminated, SignoffError
from signoff_client.sdk import (
    APPROVED,
    REJECTED,
    TERMINATED,
    WAITING_FOR_HUMAN,
    AsyncSignoff,
    Decision,
    Signoff,
    WireMessage,
    json_numbers,
    plan_decision,
)

try:
    from langchain_core.messages import ToolMessage
    from langchain_core.runnables import RunnableConfig
    from langgraph.config import get_config
    from langgraph.errors import GraphBubbleUp
    from langgraph.prebuilt.tool_node import ToolCallRequest
    from langgraph.types import Command, Interrupt, interrupt
except ImportError as missing:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        'signoff_client.adapters.langgraph needs LangGraph: pip install "signoff-client[langgraph]"'
    ) from missing

__all__ = [
    "PAUSE_KEY",
    "Pause",
    "aclaim_tool_call",
    "agate_tool_call",
    "approval_key",
    "approved_steps",
    "aresume_command",
    "asubmit_plan",
    "atool_call_wrapper",
    "claim_tool_call",
    "gate_tool_call",
    "pauses",
    "resume_command",
    "submit_plan",
    "tool_call_wrapper",
]

PAUSE_KEY = "signoff"  # interrupt values of signoff's pauses are {"signoff": {...}}


def approval_key(thread_id: str, tool_call_id: str) -> str:
    """The signoff tool_call_id for a LangGraph tool call: stable across node re-runs."""
    return stable_key("lg", thread_id, tool_call_id)


@dataclass(frozen=True)
class Pause:
    """A graph paused by `gate_tool_call`: what to watch, and which interrupt to resume."""

    interrupt_id: str
    instance_id: str
    action_id: str
    revision: int
    tool_call_id: str


def pauses(interrupts: Iterable[Interrupt]) -> list[Pause]:
    """The signoff pauses among a graph's interrupts (others are left alone)."""
    found = []
    for item in interrupts:
        value = item.value.get(PAUSE_KEY) if isinstance(item.value, Mapping) else None
        if isinstance(value, Mapping):
            found.append(
                Pause(
                    interrupt_id=item.id,
                    instance_id=str(value["instance_id"]),
                    action_id=str(value["action_id"]),
                    revision=int(value["revision"]),
                    tool_call_id=str(value["tool_call_id"]),
                )
            )
    return found


def _thread_id(config: RunnableConfig | None) -> str:
    configurable = (config if config is not None else get_config()).get("configurable") or {}
    thread_id = configurable.get("thread_id")
    if not thread_id:
        raise ValueError("gate_tool_call needs a graph with a checkpointer and a thread_id")
    return str(thread_id)


def _pause_value(decision: Decision, key: str, tool: str) -> dict[str, Any]:
    return {
        PAUSE_KEY: {
            "instance_id": decision.instance_id,
            "action_id": decision.action_id,
            "revision": decision.revision,
            "tool_call_id": key,
            "tool": tool,
            "gate_ids": list(decision.gate_ids),
        }
    }


def _ask_kwargs(
    tool_call: Mapping[str, Any],
    tool: str,
    risk_class: str | int,
    evidence_refs: Sequence[str],
    config: RunnableConfig | None,
) -> dict[str, Any]:
    return dict(
        tool_call_id=approval_key(_thread_id(config), str(tool_call["id"])),
        tool=tool,
        params=tool_call["args"],
        risk_class=risk_class,
        evidence_refs=evidence_refs,
        wait=False,
    )


def gate_tool_call(
    client: Signoff,
    instance_id: str,
    tool_call: Mapping[str, Any],
    *,
    tool: str,
    risk_class: str | int,
    evidence_refs: Sequence[str] = (),
    config: RunnableConfig | None = None,
) -> Decision:
    """Asks signoff about a tool call ({"id", "name", "args"}) from inside a node.

    Returns the APPROVED Decision (execute with `decision.params` and spend
    `decision.grant_token`, unless `decision.consumed`). While the action waits it
    interrupts the graph, and asks again each time the graph is resumed, so the grant is
    always the latest answer's. Raises ActionRejected, InstanceTerminated or SignoffError:
    the tool must not run."""
    ask = _ask_kwargs(tool_call, tool, risk_class, evidence_refs, config)
    decision = client.request_decision(instance_id, **ask)
    while decision.outcome != APPROVED:
        interrupt(_pause_value(decision, ask["tool_call_id"], tool))  # returns once resumed
        decision = client.request_decision(instance_id, **ask)  # signoff decides, not resume
    return decision


async def agate_tool_call(
    client: AsyncSignoff,
    instance_id: str,
    tool_call: Mapping[str, Any],
    *,
    tool: str,
    risk_class: str | int,
    evidence_refs: Sequence[str] = (),
    config: RunnableConfig | None = None,
) -> Decision:
    """`gate_tool_call` for async nodes."""
    ask = _ask_kwargs(tool_call, tool, risk_class, evidence_refs, config)
    decision = await client.request_decision(instance_id, **ask)
    while decision.outcome != APPROVED:
        interrupt(_pause_value(decision, ask["tool_call_id"], tool))
        decision = await client.request_decision(instance_id, **ask)
    return decision


# ---- a plan approved once, before the tools run -----------------------------------------


def _plan_pause(decision: Decision) -> dict[str, Any]:
    assert decision.action is not None
    return _pause_value(decision, decision.action.tool_call_id, decision.action.tool)


def approved_steps(answer: execution_pb.SubmitPlanResponse) -> dict[str, Any]:
    """The gated steps as approved: {step_id: {"tool", "params"}} ({} when none is gated).
    Request each with exactly these params to run it under the plan approval."""
    if not answer.HasField("approval"):
        return {}
    steps: dict[str, Any] = json_numbers(json_format.MessageToDict(answer.approval.params))
    return steps


def submit_plan(
    client: Signoff, instance_id: str, plan: Mapping[str, Any] | WireMessage
) -> execution_pb.SubmitPlanResponse:
    """Submits the plan from inside a node; while its plan approval waits for a human it
    interrupts the graph (resume it with `resume_command`) and submits again when resumed
    (SubmitPlan is idempotent by plan_id, so re-running the node never submits twice).
    Returns the answer once the approval is APPROVED, or at once when no step is gated.
    Raises ActionRejected, InstanceTerminated or SignoffError (PLAN_REJECTED: the critic's
    findings): run no gated step then."""
    answer = client.submit_plan(instance_id, plan, wait=False)
    decision = plan_decision(instance_id, answer)
    while decision is not None and decision.outcome == WAITING_FOR_HUMAN:
        interrupt(_plan_pause(decision))  # returns once resumed
        answer = client.submit_plan(instance_id, plan, wait=False)  # signoff decides
        decision = plan_decision(instance_id, answer)
    return answer


async def asubmit_plan(
    client: AsyncSignoff, instance_id: str, plan: Mapping[str, Any] | WireMessage
) -> execution_pb.SubmitPlanResponse:
    """`submit_plan` for async nodes."""
    answer = await client.submit_plan(instance_id, plan, wait=False)
    decision = plan_decision(instance_id, answer)
    while decision is not None and decision.outcome == WAITING_FOR_HUMAN:
        interrupt(_plan_pause(decision))
        answer = await client.submit_plan(instance_id, plan, wait=False)
        decision = plan_decision(instance_id, answer)
    return answer


# Why spending a grant failed when another resumer of the same pause got there first: ask
# again, and the answer says whether the call ran (another grant voided ours) or not yet.
_RACED = (ErrorReason.INVALID_GRANT, ErrorReason.ALREADY_EXECUTED)
_CLAIM_ATTEMPTS = 8


def _claim_pause(attempt: int) -> float:
    """How long a resumer whose grant was voided waits before it asks again: random and
    growing, so that the resumer holding the newest grant spends it before anyone asks
    (each ask voids the grants before it) instead of all of them voiding each other."""
    return random.uniform(0, 0.02 * 2**attempt)


def _claim_failed(action_id: str) -> SignoffError:
    return SignoffError(
        f"could not spend the grant of action {action_id}: other resumers kept asking for it",
        reason=ErrorReason.INVALID_GRANT,
        metadata={"action_id": action_id},
    )


def claim_tool_call(
    client: Signoff,
    instance_id: str,
    tool_call: Mapping[str, Any],
    *,
    tool: str,
    risk_class: str | int,
    evidence_refs: Sequence[str] = (),
    config: RunnableConfig | None = None,
) -> Decision | None:
    """`gate_tool_call`, then spends the grant (ConsumeGrant) before the tool runs.

    Returns the Decision to execute now, with `decision.params` (report without a token:
    the grant is spent), or None when the call already ran or another resumer of the same
    pause is running it. Of concurrent resumers, exactly one gets the Decision; the others
    get None, never an INVALID_GRANT error. Raises like `gate_tool_call`."""
    ask = _ask_kwargs(tool_call, tool, risk_class, evidence_refs, config)
    decision = gate_tool_call(
        client,
        instance_id,
        tool_call,
        tool=tool,
        risk_class=risk_class,
        evidence_refs=evidence_refs,
        config=config,
    )
    for attempt in range(_CLAIM_ATTEMPTS):
        if decision.consumed:
            return None
        try:
            client.consume_grant(decision.action_id, decision.grant_token)
            return decision
        except SignoffError as error:
            if error.reason not in _RACED:
                raise
        time.sleep(_claim_pause(attempt))
        decision = client.request_decision(instance_id, **ask)  # did the other one run it?
    raise _claim_failed(decision.action_id)


async def aclaim_tool_call(
    client: AsyncSignoff,
    instance_id: str,
    tool_call: Mapping[str, Any],
    *,
    tool: str,
    risk_class: str | int,
    evidence_refs: Sequence[str] = (),
    config: RunnableConfig | None = None,
) -> Decision | None:
    """`claim_tool_call` for async nodes."""
    ask = _ask_kwargs(tool_call, tool, risk_class, evidence_refs, config)
    decision = await agate_tool_call(
        client,
        instance_id,
        tool_call,
        tool=tool,
        risk_class=risk_class,
        evidence_refs=evidence_refs,
        config=config,
    )
    for attempt in range(_CLAIM_ATTEMPTS):
        if decision.consumed:
            return None
        try:
            await client.consume_grant(decision.action_id, decision.grant_token)
            return decision
        except SignoffError as error:
            if error.reason not in _RACED:
                raise
        await asyncio.sleep(_claim_pause(attempt))
        decision = await client.request_decision(instance_id, **ask)
    raise _claim_failed(decision.action_id)


# ---- ToolNode(wrap_tool_call=...) -----------------------------------------------------------

InstanceOf = Callable[[Any], str]


@dataclass(frozen=True)
class _ToolGate:
    instance_id: str | InstanceOf
    risk_classes: Mapping[str, str | int]
    namespace: str
    default_risk_class: str | int

    def instance(self, state: Any) -> str:
        if callable(self.instance_id):
            return self.instance_id(state)
        return self.instance_id

    def tool(self, name: str) -> str:
        return name if "." in name else f"{self.namespace}.{name}"

    def kwargs(self, request: ToolCallRequest) -> dict[str, Any]:
        name = str(request.tool_call["name"])
        return dict(
            tool=self.tool(name),
            risk_class=self.risk_classes.get(name, self.default_risk_class),
            config=request.runtime.config,
        )


def _state_instance(state: Any) -> str:
    return str(state["instance_id"])


def _message(request: ToolCallRequest, text: str, status: str = "error") -> ToolMessage:
    call = request.tool_call
    return ToolMessage(content=text, tool_call_id=str(call["id"]), name=call["name"], status=status)


def _approved(request: ToolCallRequest, decision: Decision) -> ToolCallRequest:
    return request.override(tool_call={**request.tool_call, "args": dict(decision.params or {})})


def _failed(result: ToolMessage | Command[Any]) -> bool:
    return isinstance(result, ToolMessage) and result.status == "error"


_ALREADY = "signoff: this call was already executed; it does not run again"


def tool_call_wrapper(
    client: Signoff,
    risk_classes: Mapping[str, str | int],
    *,
    instance_id: str | InstanceOf = _state_instance,
    namespace: str = "agent",
    default_risk_class: str | int = "DESTRUCTIVE",
) -> Callable[
    [ToolCallRequest, Callable[[ToolCallRequest], ToolMessage | Command[Any]]],
    ToolMessage | Command[Any],
]:
    """The `wrap_tool_call=` of a LangGraph ToolNode that gates every tool call on signoff::

        tools = ToolNode([issue_refund, lookup_order], wrap_tool_call=tool_call_wrapper(
            signoff, {"issue_refund": "DESTRUCTIVE", "lookup_order": "READ_ONLY"}))

    Each call is asked about (`claim_tool_call`: the graph pauses while a human decides,
    and `resume_command` resumes it), runs with the params signoff approved (an approver's
    edit included) after its grant is spent, and is reported, failed too. A rejected or
    terminated call answers the model with an error ToolMessage, and so does a call that
    already ran (a concurrent resumer, a re-run). `instance_id` is the signoff instance, or
    how to read it from the graph state (default: state["instance_id"]). Tool names
    without a dot become "<namespace>.<name>"; tools missing from `risk_classes` are asked
    as `default_risk_class`."""
    gate = _ToolGate(instance_id, risk_classes, namespace, default_risk_class)

    def wrap(
        request: ToolCallRequest,
        execute: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        try:
            decision = claim_tool_call(
                client, gate.instance(request.state), request.tool_call, **gate.kwargs(request)
            )
        except (ActionRejected, InstanceTerminated) as no:
            return _message(request, f"signoff did not allow this call: {no}")
        if decision is None:
            return _message(request, _ALREADY)
        evidence = f"tool:{request.tool_call['name']}:{request.tool_call['id']}"
        try:
            result = execute(_approved(request, decision))
        except GraphBubbleUp:
            raise  # the tool paused the graph itself: it did not fail
        except Exception as error:
            client.report_execution(decision.action_id, False, evidence, error_message=str(error))
            raise
        client.report_execution(decision.action_id, not _failed(result), evidence)
        return result

    return wrap


def atool_call_wrapper(
    client: AsyncSignoff,
    risk_classes: Mapping[str, str | int],
    *,
    instance_id: str | InstanceOf = _state_instance,
    namespace: str = "agent",
    default_risk_class: str | int = "DESTRUCTIVE",
) -> Callable[
    [ToolCallRequest, Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]]],
    Awaitable[ToolMessage | Command[Any]],
]:
    """`tool_call_wrapper` for `ToolNode(awrap_tool_call=...)`, with the asyncio client."""
    gate = _ToolGate(instance_id, risk_classes, namespace, default_risk_class)

    async def wrap(
        request: ToolCallRequest,
        execute: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        try:
            decision = await aclaim_tool_call(
                client, gate.instance(request.state), request.tool_call, **gate.kwargs(request)
            )
        except (ActionRejected, InstanceTerminated) as no:
            return _message(request, f"signoff did not allow this call: {no}")
        if decision is None:
            return _message(request, _ALREADY)
        evidence = f"tool:{request.tool_call['name']}:{request.tool_call['id']}"
        try:
            result = await execute(_approved(request, decision))
        except GraphBubbleUp:
            raise  # the tool paused the graph itself: it did not fail
        except Exception as error:
            await client.report_execution(
                decision.action_id, False, evidence, error_message=str(error)
            )
            raise
        await client.report_execution(decision.action_id, not _failed(result), evidence)
        return result

    return wrap


def _outcome(error: Exception) -> str:
    return REJECTED if isinstance(error, ActionRejected) else TERMINATED


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def resume_command(
    client: Signoff, interrupts: Iterable[Interrupt], *, timeout: float | None = None
) -> Command[Any] | None:
    """Waits through WatchInstance until every signoff pause is decided; returns the Command
    that resumes them by interrupt id, or None when none is paused.

    Raises DecisionTimeout when `timeout` passes first (the actions still wait: run the
    resumer again later) and SignoffError on errors; the graph stays paused then."""
    found, deadline = pauses(interrupts), None if timeout is None else time.monotonic() + timeout
    resume: dict[str, str] = {}
    for pause in found:
        try:
            decision = client.wait_for_decision(
                pause.instance_id, pause.action_id, pause.revision, timeout=_remaining(deadline)
            )
            resume[pause.interrupt_id] = decision.outcome
        except (ActionRejected, InstanceTerminated) as settled:
            resume[pause.interrupt_id] = _outcome(settled)
    return Command(resume=resume) if resume else None


async def aresume_command(
    client: AsyncSignoff, interrupts: Iterable[Interrupt], *, timeout: float | None = None
) -> Command[Any] | None:
    """`resume_command` with the asyncio client."""
    found, deadline = pauses(interrupts), None if timeout is None else time.monotonic() + timeout
    resume: dict[str, str] = {}
    for pause in found:
        try:
            decision = await client.wait_for_decision(
                pause.instance_id, pause.action_id, pause.revision, timeout=_remaining(deadline)
            )
            resume[pause.interrupt_id] = decision.outcome
        except (ActionRejected, InstanceTerminated) as settled:
            resume[pause.interrupt_id] = _outcome(settled)
    return Command(resume=resume) if resume else None
