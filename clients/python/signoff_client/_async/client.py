"""The signoff client: the one hand-written implementation of both SDK clients.

This file is AsyncSignoff (grpc.aio). scripts/generate turns it into Signoff, the blocking
client in `_sync/client.py`, with unasync: `async`/`await` go, and the names in
scripts/unasync_sdk.py are swapped for their blocking twins (aio_bearer_channel ->
bearer_channel, asyncio -> time, aclosing -> closing, ...). Write code that reads right
both ways, and never edit the generated file.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import grpc

from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import approval_service_pb2_grpc as approval_grpc
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import execution_service_pb2_grpc as execution_grpc
from signoff.v1 import policy_service_pb2 as policy_pb
from signoff.v1 import policy_service_pb2_grpc as policy_grpc
from signoff.v1 import types_pb2 as pb
from signoff_client._common import (
    APPROVED,
    CHANNEL_OPTIONS,
    WAITING_FOR_HUMAN,
    AsyncChannel,
    Backoff,
    Decision,
    WireMessage,
    _approved_again,
    _check_plan_request,
    _deadline,
    _decision,
    _decision_request,
    _delay,
    _evaluate_request,
    _from_event,
    _instances_request,
    _invoke_request,
    _pending,
    _pending_page,
    _remaining,
    _report_request,
    _revision,
    _settles,
    _submit_plan_request,
    _submit_request,
    _Timeout,
    _watch_request,
    plan_decision,
    proposed_action,
)
from signoff_client.auth import aio_bearer_channel
from signoff_client.errors import DecisionTimeout, from_rpc_error
from signoff_client.tracing import trace_metadata

__all__ = ["AsyncSignoff"]


class AsyncSignoff:
    """A signoff client on one channel, closed by `close()` or at the end of its `with`.

    AsyncSignoff runs on grpc.aio (`async with`, awaited methods); Signoff, generated
    from it, on blocking grpc. Each method's docstring holds for both."""

    def __init__(self, channel: AsyncChannel, *, backoff: Backoff | None = None) -> None:
        self.channel = channel
        self.backoff = backoff or Backoff()
        self._execution = execution_grpc.ExecutionServiceStub(channel)
        self._approval = approval_grpc.ApprovalServiceStub(channel)
        self._policy = policy_grpc.PolicyServiceStub(channel)

    @classmethod
    def connect(
        cls,
        target: str,
        *,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        backoff: Backoff | None = None,
    ) -> AsyncSignoff:
        """A client on a new channel to `target` that authenticates with `token` (default
        $SIGNOFF_TOKEN); TLS when credentials are given."""
        channel = aio_bearer_channel(target, token, credentials, CHANNEL_OPTIONS)
        return cls(channel, backoff=backoff)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        try:
            return await method(request, timeout=timeout, metadata=trace_metadata() or None)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    async def invoke_agent(self, envelope: Mapping[str, Any] | WireMessage) -> pb.Instance:
        """Creates (or, for a repeated request_id, returns) the instance for an envelope
        (a dict, or a grpcio or betterproto2 InvokeAgentRequest)."""
        response: execution_pb.InvokeAgentResponse = await self._call(
            self._execution.InvokeAgent, _invoke_request(envelope)
        )
        return response.instance

    async def request_decision(
        self,
        instance_id: str,
        *,
        tool_call_id: str,
        tool: str,
        params: Mapping[str, Any],
        risk_class: str | int,
        evidence_refs: Sequence[str] = (),
        estimated_cost_cents: float = 0.0,
        wait: bool = True,
        timeout: float | None = None,
    ) -> Decision:
        """Asks whether an action may run; returns only on APPROVED (or WAITING with wait=False).

        An approval, at once or after the wait (the SDK then asks again), carries the
        grant to execute with. Raises ActionRejected, InstanceTerminated, DecisionTimeout
        (the action still waits server-side) or SignoffError (reason GRANT_EXPIRED for an
        approval too old to act on). `timeout` bounds the whole call."""
        deadline = _deadline(timeout)
        proposal = proposed_action(
            tool_call_id, tool, params, risk_class, evidence_refs, estimated_cost_cents
        )
        request = _decision_request(instance_id, proposal)
        response = await self._call(self._execution.RequestDecision, request, _remaining(deadline))
        decision = _decision(instance_id, response)
        if decision.outcome == APPROVED or not wait:
            return decision
        return await self._await(instance_id, decision, decision.revision, request, deadline)

    async def wait_for_decision(
        self,
        instance_id: str,
        action_id: str,
        after_revision: int,
        *,
        proposal: WireMessage | None = None,
        timeout: float | None = None,
    ) -> Decision:
        """Resumes waiting for a decision persisted earlier (instance, action, revision).

        Pass the `proposal` (see `proposed_action`; a betterproto2 ProposedAction works too)
        to receive the approved params and a fresh grant; without it an approval is
        returned with `params` None and no grant (it tells the outcome, not how to act)."""
        request = None if proposal is None else _decision_request(instance_id, proposal)
        pending = _pending(instance_id, action_id, after_revision)
        return await self._await(instance_id, pending, after_revision, request, _deadline(timeout))

    async def _await(
        self,
        instance_id: str,
        pending: Decision,
        after_revision: int,
        request: execution_pb.RequestDecisionRequest | None,
        deadline: float | None,
    ) -> Decision:
        settled: pb.Event | None = None
        revision = after_revision
        try:
            async with contextlib.aclosing(
                self._responses(instance_id, after_revision, deadline)
            ) as stream:
                async for item in stream:
                    if item.HasField("event") and _settles(item.event, pending.action_id):
                        settled = item.event
                        break
                    revision = _revision(item, revision)  # the action still waits here
            approved = _from_event(instance_id, settled, pending)
            if request is None:
                return approved
            response = await self._retrying(self._execution.RequestDecision, request, deadline)
            return _approved_again(_decision(instance_id, response), pending.action_id)
        except _Timeout:
            raise DecisionTimeout(instance_id, pending.action_id, revision) from None

    async def _retrying(self, method: Any, request: Any, deadline: float | None) -> Any:
        """An idempotent unary call, retried on transient errors until the deadline."""
        attempt = 0
        while True:
            try:
                return await method(
                    request, timeout=_remaining(deadline), metadata=trace_metadata() or None
                )
            except grpc.RpcError as error:
                await self._pause(error, attempt, deadline)
            attempt += 1

    async def _pause(self, error: grpc.RpcError, attempt: int, deadline: float | None) -> None:
        await asyncio.sleep(_delay(self.backoff, error, attempt, deadline))

    async def _responses(
        self, instance_id: str, after_revision: int, deadline: float | None
    ) -> AsyncGenerator[execution_pb.WatchInstanceResponse, None]:
        """WatchInstance items, resumed from the last revision after transient errors."""
        revision, attempt = after_revision, 0
        while True:
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                raise _Timeout
            call = self._execution.WatchInstance(
                _watch_request(instance_id, revision),
                timeout=remaining,
                metadata=trace_metadata() or None,
            )
            try:
                async for item in call:
                    attempt = 0
                    revision = _revision(item, revision)
                    yield item
                return  # ended with OK: the instance reached a terminal state
            except grpc.RpcError as error:
                await self._pause(error, attempt, deadline)
            finally:
                call.cancel()
            attempt += 1

    async def watch_responses(
        self, instance_id: str, after_revision: int = 0
    ) -> AsyncIterator[execution_pb.WatchInstanceResponse]:
        """Like `watch`, with the stream's bookmarks (the current revision while idle)."""
        async with contextlib.aclosing(self._responses(instance_id, after_revision, None)) as items:
            async for item in items:
                yield item

    async def watch(self, instance_id: str, after_revision: int = 0) -> AsyncIterator[pb.Event]:
        """The instance's events after `after_revision`, resumed across disconnects;
        ends after the terminal event."""
        async with contextlib.aclosing(self._responses(instance_id, after_revision, None)) as items:
            async for item in items:
                if item.HasField("event"):
                    yield item.event

    async def submit_decision(
        self,
        action_id: str,
        verdict: str | int,
        reason: str,
        request_id: str | None = None,
        evidence_snapshot_hash: str = "",
        edited_params: Mapping[str, Any] | None = None,
    ) -> approval_pb.SubmitDecisionResponse:
        """Votes as the authenticated caller: approves ("APPROVE") or rejects ("REJECT").

        Pass the action_sha256 you reviewed as evidence_snapshot_hash: the vote is refused
        (EVIDENCE_CHANGED) if the action changed since. Raises AlreadyDecided when another
        decision won. Pass a stable request_id to make retries safe."""
        request = _submit_request(
            action_id, verdict, reason, request_id, evidence_snapshot_hash, edited_params
        )
        response: approval_pb.SubmitDecisionResponse = await self._call(
            self._approval.SubmitDecision, request
        )
        return response

    async def consume_grant(self, action_id: str, grant_token: str) -> pb.Action:
        """Spends the grant of an APPROVED action right before executing it: the action
        becomes EXECUTING (returned, with the params to execute), and a re-run agent sees
        it `consumed`, so the tool runs at most once even if the agent dies before its
        report. Then report without a token.

        Raises SignoffError: reason ALREADY_EXECUTED (consumed before), GRANT_EXPIRED,
        INVALID_GRANT (not the latest token: ask again) or ACTION_NOT_APPROVED (say, its
        instance was cancelled). Never execute after an error."""
        request = execution_pb.ConsumeGrantRequest(action_id=action_id, grant_token=grant_token)
        response: execution_pb.ConsumeGrantResponse = await self._call(
            self._execution.ConsumeGrant, request
        )
        return response.action

    async def report_execution(
        self,
        action_id: str,
        succeeded: bool,
        evidence_ref: str = "",
        outputs: Mapping[str, Any] | None = None,
        error_message: str = "",
        *,
        grant_token: str = "",
        cost_cents: float | None = None,
    ) -> pb.Action:
        """Records that an approved action was executed (or failed).

        Pass the Decision's `grant_token` unless `consume_grant` spent it already (an
        EXECUTING action needs none): the report then consumes the grant. A repeat of a
        report that went through (same result and evidence_ref) returns the action.
        `cost_cents` is what the execution cost; it replaces the action's estimate in the
        instance's spend (without it, the estimate counts)."""
        request = _report_request(
            action_id, succeeded, evidence_ref, outputs, error_message, grant_token, cost_cents
        )
        response: execution_pb.ReportExecutionResponse = await self._call(
            self._execution.ReportExecution, request
        )
        return response.action

    async def complete_instance(self, instance_id: str) -> pb.Instance:
        """Marks the instance COMPLETED (the agent is done)."""
        request = execution_pb.CompleteInstanceRequest(instance_id=instance_id)
        response: execution_pb.CompleteInstanceResponse = await self._call(
            self._execution.CompleteInstance, request
        )
        return response.instance

    async def cancel_instance(self, instance_id: str, reason: str = "") -> pb.Instance:
        """Terminates the instance; waiting agents learn TERMINATED."""
        request = execution_pb.CancelInstanceRequest(instance_id=instance_id, reason=reason)
        response: execution_pb.CancelInstanceResponse = await self._call(
            self._execution.CancelInstance, request
        )
        return response.instance

    async def get_instance(self, instance_id: str) -> pb.Instance:
        """The instance as signoff holds it (state, revision, tool calls used)."""
        request = execution_pb.GetInstanceRequest(instance_id=instance_id)
        response: execution_pb.GetInstanceResponse = await self._call(
            self._execution.GetInstance, request
        )
        return response.instance

    async def check_plan(
        self, instance_id: str, plan: Mapping[str, Any] | WireMessage
    ) -> execution_pb.CheckPlanResponse:
        """The critic's verdict on `plan` (see docs/plans.md): `accepted`, or one finding per
        problem naming its step. A dry run: signoff records only the verdict."""
        response: execution_pb.CheckPlanResponse = await self._call(
            self._execution.CheckPlan, _check_plan_request(instance_id, plan)
        )
        return response

    async def submit_plan(
        self,
        instance_id: str,
        plan: Mapping[str, Any] | WireMessage,
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> execution_pb.SubmitPlanResponse:
        """Submits a plan to run (see docs/plans.md): the critic checks it (a rejected plan
        raises SignoffError, reason PLAN_REJECTED, naming the findings), and the steps
        policy routes to a human become one plan approval (`answer.approval`). Once it is
        approved, each gated step requested with the params in `answer.approval.params`
        ({step_id: {"tool", "params"}}, an approver's narrowing included) is APPROVED under
        it, once. A repeat answers how the plan stands now.

        With `wait` (the default) returns once the plan approval is APPROVED, waiting on
        WatchInstance (or at once when no step is gated); raises ActionRejected (rejected or
        expired), InstanceTerminated or DecisionTimeout (it still waits server-side).
        `plan_decision(instance_id, answer)` tells where an answer stands."""
        deadline = _deadline(timeout)
        request = _submit_plan_request(instance_id, plan)
        answer: execution_pb.SubmitPlanResponse = await self._call(
            self._execution.SubmitPlan, request, _remaining(deadline)
        )
        pending = plan_decision(instance_id, answer)
        if not wait or pending is None or pending.outcome != WAITING_FOR_HUMAN:
            return answer
        await self._await(instance_id, pending, answer.revision, None, deadline)
        # Approved: the same plan again answers with the steps as approved.
        again: execution_pb.SubmitPlanResponse = await self._retrying(
            self._execution.SubmitPlan, request, deadline
        )
        plan_decision(instance_id, again)
        return again

    async def record_checkpoint(
        self,
        instance_id: str,
        decision_id: str,
        outcome: str,
        evidence_refs: Sequence[str] = (),
        outputs: Mapping[str, Any] | None = None,
    ) -> pb.DecisionRecord:
        """Records what was decided at a decision checkpoint of the plan (for example
        "support.refund.eligibility", "eligible") as a DecisionRecord in the instance's
        trail. A repeat with the same outcome, evidence_refs and outputs returns the same
        record; anything else for the same decision_id fails with ALREADY_EXISTS."""
        request = execution_pb.RecordCheckpointRequest(
            instance_id=instance_id,
            decision_id=decision_id,
            outcome=outcome,
            evidence_refs=list(evidence_refs),
        )
        if outputs:
            request.outputs.update(dict(outputs))
        response: execution_pb.RecordCheckpointResponse = await self._call(
            self._execution.RecordCheckpoint, request
        )
        return response.record

    async def evaluate_policy(
        self, envelope: Mapping[str, Any] | WireMessage, proposal: WireMessage
    ) -> policy_pb.EvaluatePolicyResponse:
        """What policy would answer for `proposal` (see `proposed_action`) under `envelope`,
        with the rules that matched: a dry run that creates nothing."""
        response: policy_pb.EvaluatePolicyResponse = await self._call(
            self._policy.EvaluatePolicy, _evaluate_request(envelope, proposal)
        )
        return response

    async def list_pending(
        self, tenant_id: str = "", *, limit: int | None = None
    ) -> list[pb.Action]:
        """The actions waiting for a human, oldest first: all pages, or the first `limit`."""
        actions: list[pb.Action] = []
        token = ""
        while limit is None or len(actions) < limit:
            request = _pending_page(tenant_id, token, limit, len(actions))
            page = await self._call(self._approval.ListPendingApprovals, request)
            actions.extend(page.actions)
            token = page.next_page_token
            if not token:
                break
        return actions if limit is None else actions[:limit]

    async def list_instances(
        self, tenant_id: str = "", state: str | int | None = None, page_size: int = 50
    ) -> list[pb.Instance]:
        """The newest instances (one page of `page_size`), of a tenant and a state
        ("WAITING_FOR_HUMAN", ...) when given."""
        response: execution_pb.ListInstancesResponse = await self._call(
            self._execution.ListInstances, _instances_request(tenant_id, state, page_size)
        )
        return list(response.instances)
