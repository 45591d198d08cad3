"""OpenAI Agents SDK: `needs_approval=` callables backed by signoff, and their resolver.

The SDK calls ``needs_approval(context, params, call_id)`` before a function tool runs:
False runs the tool now, True interrupts the run with a ToolApprovalItem that the
application must approve or reject on the RunState before it runs again. Mapped to signoff,
fail closed:

- False only when signoff APPROVED this very call (instance, call id, tool, params), the
  approval was not used yet, and its grant was consumed (ConsumeGrant: the action is now
  EXECUTING): read-only tools run at once, and run once.
- True for everything else, WAITING_FOR_HUMAN, REJECTED, TERMINATED and any error: the run
  pauses, and only `SignoffApprovals.settle` resolves the pause, by asking signoff again
  (and waiting on the stream): it consumes the grant of what signoff approved and approves
  it in the SDK, and rejects what signoff rejected or terminated, what already ran and
  what may not run any more (the model sees why). On a timeout or another error it raises
  and leaves the call pending. Never call ``state.approve()`` yourself for these.

An approver may approve with edited params (a lower amount, say). A tool wrapped with
`SignoffApprovals.gate_tool` then runs with the edited params, not the model's; a tool
gated by `needs_approval` alone cannot, so `settle` rejects the call, telling the model why,
and settles the approval as not executed (consumed and reported FAILED), so it never stays
APPROVED and usable. Prefer `gate_tool`.

Consuming the grant when the SDK is told to run the call makes every call run at most
once: a second process settling the same saved state, or a re-run after a crash, finds the
action consumed and rejects the call. So run the settled state right away, and report from
the tool, failures too.

::

    approvals = SignoffApprovals(signoff, instance.instance_id)
    refund = approvals.gate_tool(function_tool(issue_refund),
                                 tool="adp_payments.issue_refund", risk_class="DESTRUCTIVE")
    result = await Runner.run(agent, "Refund order ord_881")
    if result.interruptions:                    # a human decides: persist and exit
        save(result.to_state().to_string())
    # later, maybe in another process, with the same SignoffApprovals set-up:
    state = await RunState.from_string(agent, load())
    await approvals.settle(state)               # waits through WatchInstance
    result = await Runner.run(agent, state)

Inside the tool, report what happened with ``await approvals.report(ctx.tool_call_id, True)``
(the grant is spent already: the report needs no token).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from signoff_client.adapters import stable_key
from signoff_client.errors import ActionRejected, ErrorReason, InstanceTerminated, SignoffError
from signoff_client.sdk import APPROVED, AsyncSignoff, Decision

try:
    from agents import FunctionTool, RunContextWrapper, RunState
    from agents.tool_context import ToolContext
except ImportError as missing:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "signoff_client.adapters.openai_agents needs the OpenAI Agents SDK: "
        'pip install "signoff-client[openai-agents]"'
    ) from missing

__all__ = ["NeedsApproval", "SignoffApprovals", "approval_key"]

NeedsApproval = Callable[[RunContextWrapper[Any], dict[str, Any], str], Awaitable[bool]]


# Why consuming a grant can fail for good: the call must be rejected, not retried.
_MAY_NOT_RUN = (
    ErrorReason.ALREADY_EXECUTED,
    ErrorReason.GRANT_EXPIRED,
    ErrorReason.ACTION_NOT_APPROVED,
)


def approval_key(call_id: str) -> str:
    """The signoff tool_call_id for a model's tool call id: the same on every re-ask."""
    return stable_key("oa", call_id)


@dataclass(frozen=True)
class _Gate:
    tool: str
    risk_class: str | int
    evidence_refs: tuple[str, ...]
    runs_edits: bool  # a gate_tool tool: it runs with params an approver edited


def _arguments(text: str | None) -> dict[str, Any] | None:
    try:
        parsed = json.loads(text or "")
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


class SignoffApprovals:
    """signoff-backed approvals for the function tools of runs on one signoff instance."""

    def __init__(self, client: AsyncSignoff, instance_id: str) -> None:
        self.client = client
        self.instance_id = instance_id
        self._gates: dict[str, _Gate] = {}
        # call_id -> action_id of the calls whose grant this set-up consumed, for report();
        # those not reported yet are allowed to run (the SDK may ask more than once).
        self._actions: dict[str, str] = {}
        self._reported: set[str] = set()
        # call_id -> the params an approver edited, for the tools of `gate_tool` to run with.
        self._edited: dict[str, dict[str, Any]] = {}

    def needs_approval(
        self,
        name: str,
        *,
        tool: str,
        risk_class: str | int,
        evidence_refs: Sequence[str] = (),
    ) -> NeedsApproval:
        """The `needs_approval=` for the function tool called `name` (its name in the SDK);
        `tool` and `risk_class` are what signoff sees.

        A tool gated only by this cannot run params an approver edited: such a call is
        rejected, and its approval settled as not executed. `gate_tool` can run them."""
        return self._register(name, _Gate(tool, risk_class, tuple(evidence_refs), False))

    def gate_tool(
        self,
        function_tool: FunctionTool,
        *,
        tool: str,
        risk_class: str | int,
        evidence_refs: Sequence[str] = (),
    ) -> FunctionTool:
        """`function_tool` gated by signoff, that runs with the params signoff approved.

        The same gate as `needs_approval`, and when an approver edited the params (for
        example a lower amount), the tool receives the edited params instead of the
        model's arguments::

            refund = approvals.gate_tool(function_tool(issue_refund),
                                         tool="adp_payments.issue_refund",
                                         risk_class="DESTRUCTIVE")
        """
        gate = _Gate(tool, risk_class, tuple(evidence_refs), True)
        invoke = function_tool.on_invoke_tool

        async def on_invoke_tool(context: ToolContext[Any], arguments: str) -> Any:
            edited = self._edited.get(context.tool_call_id)
            if edited is not None and self._running(context.tool_call_id):
                arguments = json.dumps(edited)  # what signoff approved, not what was asked
            return await invoke(context, arguments)

        return dataclasses.replace(
            function_tool,
            needs_approval=self._register(function_tool.name, gate),
            on_invoke_tool=on_invoke_tool,
        )

    def _register(self, name: str, gate: _Gate) -> NeedsApproval:
        self._gates[name] = gate

        async def needs_approval(
            context: RunContextWrapper[Any], params: dict[str, Any], call_id: str
        ) -> bool:
            if self._running(call_id):
                return False
            try:
                decision = await self._ask(name, params, call_id, wait=False)
                if decision.outcome != APPROVED or not self._may_run(name, decision, params):
                    return True  # settle() decides, and says why to the model
                await self._take(decision, params, call_id)
                return False
            except Exception:  # noqa: BLE001 - pause; settle() asks again and decides
                return True

        return needs_approval

    async def settle(self, state: RunState[Any, Any], *, timeout: float | None = None) -> None:
        """Approves or rejects each paused call of these tools as signoff decides, waiting
        through WatchInstance while a human decides.

        Each call approved here has its grant consumed: run the state next. A call whose
        params an approver edited runs with the edited params when its tool came from
        `gate_tool`; otherwise it is rejected, and its approval is reported as not executed
        (FAILED), so it does not stay APPROVED. Raises DecisionTimeout (the calls still
        wait: persist the state again and exit) or SignoffError; nothing is approved then
        that signoff did not approve."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for item in state.get_interruptions():
            name, call_id = item.name or "", item.call_id
            if name not in self._gates or not call_id:
                continue  # not one of signoff's: the application settles it
            if self._running(call_id):  # settled before by this set-up: its grant is ours
                state.approve(item)
                continue
            params = _arguments(item.arguments)
            if params is None:
                state.reject(item, rejection_message="signoff: unreadable arguments")
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                decision = await self._ask(name, params, call_id, wait=True, timeout=remaining)
                refused = await self._settle_one(name, decision, params, call_id)
            except (ActionRejected, InstanceTerminated) as no:
                state.reject(item, rejection_message=f"signoff did not allow this call: {no}")
                continue
            except SignoffError as error:
                if error.reason not in _MAY_NOT_RUN:
                    raise  # maybe transient: the call stays pending, settle again
                state.reject(item, rejection_message=f"signoff: this call may not run: {error}")
                continue
            if refused is None:
                state.approve(item)
            else:
                state.reject(item, rejection_message=refused)

    def _may_run(self, name: str, decision: Decision, params: Mapping[str, Any]) -> bool:
        """Whether the approved call can run here: not used yet, and with the approved
        params (the model's, or edited ones that the tool takes from `gate_tool`)."""
        edited = decision.params != params
        return not decision.consumed and (not edited or self._gates[name].runs_edits)

    async def _settle_one(
        self, name: str, decision: Decision, params: Mapping[str, Any], call_id: str
    ) -> str | None:
        """None when the SDK may run the call now (its grant consumed); else why not."""
        if decision.consumed:
            return "signoff: this call was already executed"
        if self._may_run(name, decision, params):
            await self._take(decision, params, call_id)
            return None
        # Approved with edited params this tool cannot take: refuse, and settle the approval
        # (consumed, reported FAILED) so it does not stay APPROVED and usable.
        why = (
            f"an approver changed the params to {json.dumps(decision.params, sort_keys=True)}, "
            f"and the tool {name} cannot run edited params (gate it with gate_tool)"
        )
        await self.client.consume_grant(decision.action_id, decision.grant_token)
        await self.client.report_execution(
            decision.action_id, False, f"tool:{call_id}", error_message=f"not executed: {why}"
        )
        return f"signoff: this call was not executed: {why}"

    async def report(
        self,
        call_id: str,
        succeeded: bool,
        outputs: Mapping[str, Any] | None = None,
        error_message: str = "",
    ) -> None:
        """Reports the execution of an approved call (from the tool, with its tool_call_id).
        Report failures too: an unreported call stays EXECUTING in signoff."""
        action_id = self._actions.get(call_id)
        if action_id is None:
            raise SignoffError(f"no approved signoff action for call {call_id}")
        await self.client.report_execution(
            action_id, succeeded, f"tool:{call_id}", outputs, error_message
        )
        self._reported.add(call_id)

    async def _ask(
        self,
        name: str,
        params: Mapping[str, Any],
        call_id: str,
        *,
        wait: bool,
        timeout: float | None = None,
    ) -> Decision:
        gate = self._gates[name]
        return await self.client.request_decision(
            self.instance_id,
            tool_call_id=approval_key(call_id),
            tool=gate.tool,
            params=params,
            risk_class=gate.risk_class,
            evidence_refs=gate.evidence_refs,
            wait=wait,
            timeout=timeout,
        )

    def _running(self, call_id: str) -> bool:
        """Whether this set-up consumed the call's grant and the call has not reported."""
        return call_id in self._actions and call_id not in self._reported

    async def _take(self, decision: Decision, params: Mapping[str, Any], call_id: str) -> None:
        """Consumes the grant of a call that may run: the SDK runs it next."""
        await self.client.consume_grant(decision.action_id, decision.grant_token)
        self._actions[call_id] = decision.action_id
        if decision.params is not None and decision.params != params:
            self._edited[call_id] = decision.params
