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

Both clients share the pure helpers below (request building, answer and error mapping,
backoff); only the I/O loops differ. Every call carries the current OpenTelemetry span's
`traceparent` when opentelemetry-api is installed (see signoff_client.tracing).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Generator,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

import grpc
from google.protobuf import json_format

from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import approval_service_pb2_grpc as approval_grpc
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import execution_service_pb2_grpc as execution_grpc
from signoff.v1 import policy_service_pb2 as policy_pb
from signoff.v1 import policy_service_pb2_grpc as policy_grpc
from signoff.v1 import types_pb2 as pb
from signoff_client.auth import aio_bearer_channel, bearer_channel
from signoff_client.errors import (
    UNEXPECTED_OUTCOME,
    ActionRejected,
    DecisionTimeout,
    ErrorReason,
    InstanceTerminated,
    SignoffError,
    error_info,
    from_rpc_error,
    rich_status,
)
from signoff_client.tracing import trace_metadata

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
    "proposed_action",
]

APPROVED = "APPROVED"
WAITING_FOR_HUMAN = "WAITING_FOR_HUMAN"
REJECTED = "REJECTED"
TERMINATED = "TERMINATED"

# Used by connect(): keep idle streams alive and reconnect quickly once a server is back.
CHANNEL_OPTIONS: list[tuple[str, int]] = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.max_reconnect_backoff_ms", 5_000),
]

# INTERNAL/UNKNOWN without signoff's ErrorInfo come from the transport (a reset stream, a
# proxy); they are retried this many times in a row before being raised.
_TRANSPORT_ERROR_RETRIES = 5


@dataclass(frozen=True)
class Decision:
    """signoff's answer about one action.

    On APPROVED, `params` are the params signoff approved: execute with these, not a
    local copy, and `grant_token` is the single-use grant to execute them with (pass it to
    `consume_grant` or `report_execution`; valid until `grant_expire_time`). Each
    RequestDecision for the action issues a fresh token and voids the previous one, so
    use the token of the latest answer. `params` and `action` are None, and `grant_token`
    is empty, only for an approval learned through `wait_for_decision` without the
    proposal (the stream carries neither), and the token is empty once the action was
    consumed. `revision` is the instance revision to watch from (persist it with
    `action_id` to resume a wait later).
    """

    outcome: str
    action_id: str
    action_sha256: str
    params: dict[str, Any] | None
    approver: str
    reason: str
    revision: int
    action: pb.Action | None = field(repr=False)
    instance_id: str = ""
    gate_ids: tuple[str, ...] = ()
    # A credential: kept out of repr() so that logging a Decision never leaks it.
    grant_token: str = field(default="", repr=False)
    grant_expire_time: datetime | None = None

    @property
    def consumed(self) -> bool:
        """True once the approval was used: the action is EXECUTING, EXECUTED or FAILED.

        An APPROVED answer to a repeated RequestDecision (a resumed or re-run agent) with
        `consumed` set means the action already ran, or started to: do not execute it
        again (there is no grant to execute it with either)."""
        return self.action is not None and self.action.state in _CONSUMED


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter between reconnection attempts (seconds)."""

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0

    def delay(self, attempt: int) -> float:
        # The exponent is capped so a days-long outage never overflows the float.
        ceiling = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


_CONSUMED = (pb.ACTION_STATE_EXECUTING, pb.ACTION_STATE_EXECUTED, pb.ACTION_STATE_FAILED)


class WireMessage(Protocol):
    """Any protobuf message, for example a betterproto2 one from `signoff_client.betterproto`."""

    def SerializeToString(self) -> bytes: ...


_Pb = TypeVar("_Pb", execution_pb.InvokeAgentRequest, pb.ProposedAction)


def _as_pb(message: WireMessage, kind: type[_Pb]) -> _Pb:
    """The grpcio message for `message` (a betterproto2 message crosses as wire bytes)."""
    if isinstance(message, kind):
        return message
    return kind.FromString(message.SerializeToString())


# ---- pure helpers shared by both clients ------------------------------------------------


def _enum(wrapper: Any, prefix: str, value: str | int) -> int:
    """An enum number from a pb value, a short name ("DESTRUCTIVE") or a full name."""
    if isinstance(value, int):
        wrapper.Name(value)  # ValueError for unknown numbers
        return value
    name = value.upper()
    try:
        return int(wrapper.Value(name if name.startswith(prefix) else prefix + name))
    except ValueError:
        valid = [
            known.removeprefix(prefix)
            for known in wrapper.keys()
            if not known.endswith("_UNSPECIFIED")
        ]
        raise ValueError(
            f"unknown {prefix.rstrip('_')} {value!r}; valid: {', '.join(valid)}"
        ) from None


def json_numbers(value: Any) -> Any:
    """Struct numbers are doubles; whole ones become ints (the same RFC 8785 value)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: json_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_numbers(item) for item in value]
    return value


def proposed_action(
    tool_call_id: str,
    tool: str,
    params: Mapping[str, Any],
    risk_class: str | int,
    evidence_refs: Sequence[str] = (),
    estimated_cost_cents: float = 0.0,
) -> pb.ProposedAction:
    """Builds the ProposedAction RequestDecision takes (risk_class as "DESTRUCTIVE" or pb)."""
    action = pb.ProposedAction(
        tool_call_id=tool_call_id,
        tool=tool,
        risk_class=_enum(pb.RiskClass, "RISK_CLASS_", risk_class),  # type: ignore[arg-type]
        evidence_refs=list(evidence_refs),
        estimated_cost_cents=estimated_cost_cents,
    )
    action.params.update(dict(params))
    return action


def _invoke_request(
    envelope: Mapping[str, Any] | WireMessage,
) -> execution_pb.InvokeAgentRequest:
    if isinstance(envelope, Mapping):
        return json_format.ParseDict(dict(envelope), execution_pb.InvokeAgentRequest())
    return _as_pb(envelope, execution_pb.InvokeAgentRequest)


def _evaluate_request(
    envelope: Mapping[str, Any] | WireMessage, proposal: WireMessage
) -> policy_pb.EvaluatePolicyRequest:
    return policy_pb.EvaluatePolicyRequest(
        envelope=_invoke_request(envelope), action=_as_pb(proposal, pb.ProposedAction)
    )


def _submit_request(
    action_id: str,
    verdict: str | int,
    reason: str,
    request_id: str | None,
    evidence_snapshot_hash: str,
    edited_params: Mapping[str, Any] | None = None,
) -> approval_pb.SubmitDecisionRequest:
    request = approval_pb.SubmitDecisionRequest(
        action_id=action_id,
        verdict=_enum(pb.Verdict, "VERDICT_", verdict),  # type: ignore[arg-type]
        reason=reason,
        request_id=request_id or f"sdk_{uuid.uuid4().hex}",
        evidence_snapshot_hash=evidence_snapshot_hash,
    )
    if edited_params is not None:
        request.edited_params.update(dict(edited_params))
    return request


def _pending_page(tenant_id: str, token: str, limit: int | None, seen: int) -> Any:
    size = 1000 if limit is None else max(1, min(1000, limit - seen))
    return approval_pb.ListPendingApprovalsRequest(
        tenant_id=tenant_id, page_size=size, page_token=token
    )


def _instances_request(
    tenant_id: str, state: str | int | None, page_size: int
) -> execution_pb.ListInstancesRequest:
    return execution_pb.ListInstancesRequest(
        tenant_id=tenant_id,
        state=None if state is None else _enum(pb.InstanceState, "INSTANCE_STATE_", state),  # type: ignore[arg-type]
        page_size=page_size,
    )


def _report_request(
    action_id: str,
    succeeded: bool,
    evidence_ref: str,
    outputs: Mapping[str, Any] | None,
    error_message: str,
    grant_token: str,
    cost_cents: float | None,
) -> execution_pb.ReportExecutionRequest:
    request = execution_pb.ReportExecutionRequest(
        action_id=action_id,
        result=execution_pb.EXECUTION_RESULT_SUCCEEDED
        if succeeded
        else execution_pb.EXECUTION_RESULT_FAILED,
        evidence_ref=evidence_ref,
        error_message=error_message,
        grant_token=grant_token,
        cost_cents=cost_cents,
    )
    if outputs:
        request.outputs.update(dict(outputs))
    return request


def _decision_request(
    instance_id: str, proposal: WireMessage
) -> execution_pb.RequestDecisionRequest:
    action = _as_pb(proposal, pb.ProposedAction)
    return execution_pb.RequestDecisionRequest(instance_id=instance_id, action=action)


def _pending(instance_id: str, action_id: str, revision: int) -> Decision:
    """A waiting action known only by id (a resumed wait)."""
    return Decision(
        outcome=WAITING_FOR_HUMAN,
        action_id=action_id,
        action_sha256="",
        params=None,
        approver="",
        reason="",
        revision=revision,
        action=None,
        instance_id=instance_id,
    )


def _outcome_name(number: int) -> str:
    return pb.Outcome.Name(number).removeprefix("OUTCOME_")


def _decision(instance_id: str, response: execution_pb.RequestDecisionResponse) -> Decision:
    """Maps a RequestDecision answer: returns APPROVED/WAITING_FOR_HUMAN, raises the rest
    (an approval that may no longer be acted on included)."""
    action = response.action if response.HasField("action") else None
    expires = (
        response.grant_expire_time.ToDatetime(tzinfo=UTC)
        if response.HasField("grant_expire_time")
        else None
    )
    decision = Decision(
        outcome=_outcome_name(response.outcome),
        action_id=response.action_id,
        action_sha256=response.action_sha256,
        params=json_numbers(json_format.MessageToDict(action.params)) if action else {},
        approver=action.decided_by if action else "",
        reason=response.reason,
        revision=response.revision,
        action=action,
        instance_id=instance_id,
        gate_ids=tuple(response.gate_ids),
        grant_token=response.grant_token,
        grant_expire_time=expires,
    )
    if decision.outcome == REJECTED:
        raise ActionRejected(decision)
    if decision.outcome == TERMINATED:
        raise InstanceTerminated(instance_id, decision.reason, decision)
    if decision.outcome not in (APPROVED, WAITING_FOR_HUMAN):
        raise SignoffError(f"unexpected outcome {decision.outcome}", reason=UNEXPECTED_OUTCOME)
    if decision.outcome == APPROVED and not decision.consumed and not decision.grant_token:
        # Approved, not run, and no grant: the approval expired. It may not run any more.
        raise SignoffError(
            f"the approval of action {decision.action_id} expired; it may no longer run "
            "(propose the action again under a new tool_call_id)",
            reason=ErrorReason.GRANT_EXPIRED,
            metadata={"action_id": decision.action_id},
        )
    return decision


def _settles(event: pb.Event, action_id: str) -> bool:
    """Whether an event tells the agent the outcome of its action."""
    return event.action_id == action_id and event.outcome not in (
        pb.OUTCOME_UNSPECIFIED,
        pb.OUTCOME_WAITING_FOR_HUMAN,
    )


def _from_event(instance_id: str, event: pb.Event | None, pending: Decision | None) -> Decision:
    """Maps the event that settled an action (None: the stream ended first).

    Returns an APPROVED Decision without params or grant (the caller re-asks to get
    them); raises ActionRejected or InstanceTerminated otherwise."""
    if event is None:
        raise InstanceTerminated(
            instance_id, "the instance ended before the action was decided", pending
        )
    decision = Decision(
        outcome=_outcome_name(event.outcome),
        action_id=event.action_id,
        action_sha256=pending.action_sha256 if pending else "",
        params=pending.params if pending else None,
        approver=event.actor,
        reason=event.reason,
        revision=event.revision,
        action=pending.action if pending else None,
        instance_id=instance_id,
        gate_ids=pending.gate_ids if pending else (),
    )
    if decision.outcome == REJECTED:
        raise ActionRejected(decision)
    if decision.outcome != APPROVED:
        raise InstanceTerminated(instance_id, event.reason, decision)
    return decision


def _approved_again(decision: Decision, action_id: str) -> Decision:
    """Checks the repeated RequestDecision after an approval event (fail closed)."""
    if decision.outcome != APPROVED or decision.action_id != action_id:
        raise SignoffError(
            f"signoff announced the approval of {action_id} but now answers "
            f"{decision.outcome} for {decision.action_id}; not executing",
            reason=UNEXPECTED_OUTCOME,
        )
    return decision


def _retryable(error: grpc.RpcError, attempt: int) -> bool:
    """Transient errors worth a reconnect. Retrying a read is safe; never approval."""
    code = error.code()
    if code == grpc.StatusCode.UNAVAILABLE:
        return True
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        # signoff's own INTERNAL carries an ErrorInfo and is final; a transport's is not.
        return attempt < _TRANSPORT_ERROR_RETRIES and error_info(rich_status(error)) is None
    return False


class _Timeout(Exception):
    """The caller's deadline passed inside a watch loop."""


def _delay(backoff: Backoff, error: grpc.RpcError, attempt: int, deadline: float | None) -> float:
    """How long to wait before retrying after `error`; raises when retrying is wrong."""
    code = error.code()
    if deadline is not None and code == grpc.StatusCode.DEADLINE_EXCEEDED:
        raise _Timeout from error
    if not _retryable(error, attempt):
        raise from_rpc_error(error) from error
    delay, remaining = backoff.delay(attempt), _remaining(deadline)
    if remaining is None:
        return delay
    if remaining <= 0:
        raise _Timeout from error
    return min(delay, remaining)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _revision(item: execution_pb.WatchInstanceResponse, current: int) -> int:
    if item.HasField("event"):
        return item.event.revision
    return max(current, item.bookmark.revision)


def _watch_request(instance_id: str, revision: int) -> execution_pb.WatchInstanceRequest:
    return execution_pb.WatchInstanceRequest(instance_id=instance_id, after_revision=revision)


# ---- grpc.aio ----------------------------------------------------------------------------


class AsyncSignoff:
    """The asyncio signoff client, on a grpc.aio channel (closed by `async with`)."""

    def __init__(self, channel: grpc.aio.Channel, *, backoff: Backoff | None = None) -> None:
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
        await self.channel.close(None)

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


# ---- blocking grpc -----------------------------------------------------------------------


class Signoff:
    """The blocking signoff client, on a grpc channel (closed by `with`)."""

    def __init__(self, channel: grpc.Channel, *, backoff: Backoff | None = None) -> None:
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
    ) -> Signoff:
        """A client on a new channel to `target` that authenticates with `token` (default
        $SIGNOFF_TOKEN); TLS when credentials are given."""
        channel = bearer_channel(target, token, credentials, CHANNEL_OPTIONS)
        return cls(channel, backoff=backoff)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        try:
            return method(request, timeout=timeout, metadata=trace_metadata() or None)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from error

    def invoke_agent(self, envelope: Mapping[str, Any] | WireMessage) -> pb.Instance:
        """Creates (or, for a repeated request_id, returns) the instance for an envelope
        (a dict, or a grpcio or betterproto2 InvokeAgentRequest)."""
        response: execution_pb.InvokeAgentResponse = self._call(
            self._execution.InvokeAgent, _invoke_request(envelope)
        )
        return response.instance

    def request_decision(
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
        """Asks whether an action may run; see `AsyncSignoff.request_decision`."""
        deadline = _deadline(timeout)
        proposal = proposed_action(
            tool_call_id, tool, params, risk_class, evidence_refs, estimated_cost_cents
        )
        request = _decision_request(instance_id, proposal)
        response = self._call(self._execution.RequestDecision, request, _remaining(deadline))
        decision = _decision(instance_id, response)
        if decision.outcome == APPROVED or not wait:
            return decision
        return self._await(instance_id, decision, decision.revision, request, deadline)

    def wait_for_decision(
        self,
        instance_id: str,
        action_id: str,
        after_revision: int,
        *,
        proposal: WireMessage | None = None,
        timeout: float | None = None,
    ) -> Decision:
        """Resumes a persisted wait; see `AsyncSignoff.wait_for_decision`."""
        request = None if proposal is None else _decision_request(instance_id, proposal)
        pending = _pending(instance_id, action_id, after_revision)
        return self._await(instance_id, pending, after_revision, request, _deadline(timeout))

    def _await(
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
            responses = self._responses(instance_id, after_revision, deadline)
            with contextlib.closing(responses) as stream:
                for item in stream:
                    if item.HasField("event") and _settles(item.event, pending.action_id):
                        settled = item.event
                        break
                    revision = _revision(item, revision)  # the action still waits here
            approved = _from_event(instance_id, settled, pending)
            if request is None:
                return approved
            response = self._retrying(self._execution.RequestDecision, request, deadline)
            return _approved_again(_decision(instance_id, response), pending.action_id)
        except _Timeout:
            raise DecisionTimeout(instance_id, pending.action_id, revision) from None

    def _retrying(self, method: Any, request: Any, deadline: float | None) -> Any:
        attempt = 0
        while True:
            try:
                return method(
                    request, timeout=_remaining(deadline), metadata=trace_metadata() or None
                )
            except grpc.RpcError as error:
                self._pause(error, attempt, deadline)
            attempt += 1

    def _pause(self, error: grpc.RpcError, attempt: int, deadline: float | None) -> None:
        time.sleep(_delay(self.backoff, error, attempt, deadline))

    def _responses(
        self, instance_id: str, after_revision: int, deadline: float | None
    ) -> Generator[execution_pb.WatchInstanceResponse, None, None]:
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
                for item in call:
                    attempt = 0
                    revision = _revision(item, revision)
                    yield item
                return
            except grpc.RpcError as error:
                self._pause(error, attempt, deadline)
            finally:
                call.cancel()
            attempt += 1

    def watch_responses(
        self, instance_id: str, after_revision: int = 0
    ) -> Iterator[execution_pb.WatchInstanceResponse]:
        """Like `watch`, with the stream's bookmarks (the current revision while idle)."""
        with contextlib.closing(self._responses(instance_id, after_revision, None)) as items:
            yield from items

    def watch(self, instance_id: str, after_revision: int = 0) -> Iterator[pb.Event]:
        """The instance's events after `after_revision`, resumed across disconnects;
        ends after the terminal event."""
        with contextlib.closing(self._responses(instance_id, after_revision, None)) as items:
            for item in items:
                if item.HasField("event"):
                    yield item.event

    def submit_decision(
        self,
        action_id: str,
        verdict: str | int,
        reason: str,
        request_id: str | None = None,
        evidence_snapshot_hash: str = "",
        edited_params: Mapping[str, Any] | None = None,
    ) -> approval_pb.SubmitDecisionResponse:
        """Approves or rejects a waiting action; see `AsyncSignoff.submit_decision`."""
        request = _submit_request(
            action_id, verdict, reason, request_id, evidence_snapshot_hash, edited_params
        )
        response: approval_pb.SubmitDecisionResponse = self._call(
            self._approval.SubmitDecision, request
        )
        return response

    def consume_grant(self, action_id: str, grant_token: str) -> pb.Action:
        """Spends an APPROVED action's grant right before executing it (the action becomes
        EXECUTING); see `AsyncSignoff.consume_grant`."""
        request = execution_pb.ConsumeGrantRequest(action_id=action_id, grant_token=grant_token)
        response: execution_pb.ConsumeGrantResponse = self._call(
            self._execution.ConsumeGrant, request
        )
        return response.action

    def report_execution(
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
        """Records that an approved action was executed (or failed), with the Decision's
        `grant_token` unless the action is EXECUTING; see `AsyncSignoff.report_execution`."""
        request = _report_request(
            action_id, succeeded, evidence_ref, outputs, error_message, grant_token, cost_cents
        )
        response: execution_pb.ReportExecutionResponse = self._call(
            self._execution.ReportExecution, request
        )
        return response.action

    def complete_instance(self, instance_id: str) -> pb.Instance:
        """Marks the instance COMPLETED (the agent is done)."""
        request = execution_pb.CompleteInstanceRequest(instance_id=instance_id)
        response: execution_pb.CompleteInstanceResponse = self._call(
            self._execution.CompleteInstance, request
        )
        return response.instance

    def cancel_instance(self, instance_id: str, reason: str = "") -> pb.Instance:
        """Terminates the instance; waiting agents learn TERMINATED."""
        request = execution_pb.CancelInstanceRequest(instance_id=instance_id, reason=reason)
        response: execution_pb.CancelInstanceResponse = self._call(
            self._execution.CancelInstance, request
        )
        return response.instance

    def get_instance(self, instance_id: str) -> pb.Instance:
        """The instance as signoff holds it (state, revision, tool calls used)."""
        request = execution_pb.GetInstanceRequest(instance_id=instance_id)
        response: execution_pb.GetInstanceResponse = self._call(
            self._execution.GetInstance, request
        )
        return response.instance

    def evaluate_policy(
        self, envelope: Mapping[str, Any] | WireMessage, proposal: WireMessage
    ) -> policy_pb.EvaluatePolicyResponse:
        """What policy would answer; see `AsyncSignoff.evaluate_policy`."""
        response: policy_pb.EvaluatePolicyResponse = self._call(
            self._policy.EvaluatePolicy, _evaluate_request(envelope, proposal)
        )
        return response

    def list_pending(self, tenant_id: str = "", *, limit: int | None = None) -> list[pb.Action]:
        """The actions waiting for a human, oldest first: all pages, or the first `limit`."""
        actions: list[pb.Action] = []
        token = ""
        while limit is None or len(actions) < limit:
            request = _pending_page(tenant_id, token, limit, len(actions))
            page = self._call(self._approval.ListPendingApprovals, request)
            actions.extend(page.actions)
            token = page.next_page_token
            if not token:
                break
        return actions if limit is None else actions[:limit]

    def list_instances(
        self, tenant_id: str = "", state: str | int | None = None, page_size: int = 50
    ) -> list[pb.Instance]:
        """The newest instances (one page of `page_size`), of a tenant and a state
        ("WAITING_FOR_HUMAN", ...) when given."""
        response: execution_pb.ListInstancesResponse = self._call(
            self._execution.ListInstances, _instances_request(tenant_id, state, page_size)
        )
        return list(response.instances)
