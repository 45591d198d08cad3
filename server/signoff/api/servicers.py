"""The gRPC services: validate, call one use case, translate the answer. Authentication,
errors and observation are the call layer's (calls.py), for gRPC and HTTP alike."""

from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from signoff.api import convert
from signoff.api.calls import caller
from signoff.api.validation import MAX_ID, TOOL, Validator
from signoff.domain.models import Bookmark, Event
from signoff.domain.plans import ID_PATTERN, MAX_STEPS
from signoff.domain.states import ExecutionResult, InstanceState, Outcome, Verdict
from signoff.services import (
    audit,
    chain,
    checkpoints,
    decisions,
    instances,
    plans,
    policies,
    watch,
)
from signoff.services.context import Context
from signoff.telemetry import tracing
from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import approval_service_pb2_grpc as approval_grpc
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import audit_service_pb2_grpc as audit_grpc
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import execution_service_pb2_grpc as execution_grpc
from signoff.v1 import policy_service_pb2 as policy_pb
from signoff.v1 import policy_service_pb2_grpc as policy_grpc
from signoff.v1 import types_pb2 as pb


class ExecutionService(execution_grpc.ExecutionServiceServicer):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def InvokeAgent(
        self, request: execution_pb.InvokeAgentRequest, context: grpc.aio.ServicerContext
    ) -> execution_pb.InvokeAgentResponse:
        v = Validator()
        _validate_envelope(v, request)
        v.done()
        instance = await instances.invoke_agent(
            self.ctx,
            caller(),
            convert.message_to_json(request),
            tracing.traceparent_of_call(context.invocation_metadata()),
        )
        return execution_pb.InvokeAgentResponse(instance=convert.instance_to_pb(instance))

    async def RequestDecision(
        self, request: execution_pb.RequestDecisionRequest, context: grpc.aio.ServicerContext
    ) -> execution_pb.RequestDecisionResponse:
        v = Validator()
        v.identifier("instance_id", request.instance_id)
        _validate_proposal(v, request)
        v.done()
        answer = await decisions.request_decision(
            self.ctx,
            caller(),
            request.instance_id,
            convert.proposal_from_pb(request.action),
            tracing.traceparent_of_call(context.invocation_metadata()),
        )
        response = execution_pb.RequestDecisionResponse(
            outcome=convert.enum_to_pb(pb.Outcome, "OUTCOME", answer.outcome),
            reason=answer.reason,
            revision=answer.revision,
        )
        if answer.action is not None:
            response.action_id = answer.action.action_id
            response.action_sha256 = answer.action.action_sha256
            response.action.CopyFrom(convert.action_to_pb(answer.action))
            response.controls.CopyFrom(
                convert.controls_to_pb(answer.action.policy, answer.action.gate_ids)
            )
            if answer.outcome is Outcome.WAITING_FOR_HUMAN:
                response.gate_ids.extend(g.gate_id for g in answer.action.waiting_gates())
            if answer.grant_token and answer.action.grant_expires is not None:
                response.grant_token = answer.grant_token
                response.grant_expire_time.FromDatetime(answer.action.grant_expires)
        return response

    async def WatchInstance(
        self, request: execution_pb.WatchInstanceRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[execution_pb.WatchInstanceResponse]:
        v = Validator()
        v.identifier("instance_id", request.instance_id)
        if request.after_revision < 0:
            v.fail("after_revision", "must not be negative")
        v.done()
        async for item in watch.watch_instance(
            self.ctx, caller(), request.instance_id, request.after_revision
        ):
            if isinstance(item, Event):
                yield execution_pb.WatchInstanceResponse(event=convert.event_to_pb(item))
            else:
                yield execution_pb.WatchInstanceResponse(
                    bookmark=execution_pb.Bookmark(
                        revision=item.revision, time=convert.timestamp(item.time)
                    )
                )
            del item  # an idle stream keeps no event alive

    async def ConsumeGrant(
        self, request: execution_pb.ConsumeGrantRequest, context: grpc.aio.ServicerContext
    ) -> execution_pb.ConsumeGrantResponse:
        v = Validator()
        v.identifier("action_id", request.action_id)
        v.identifier("grant_token", request.grant_token)
        v.done()
        action = await decisions.consume_grant(
            self.ctx, caller(), request.action_id, request.grant_token
        )
        return execution_pb.ConsumeGrantResponse(action=convert.action_to_pb(action))

    async def ReportExecution(
        self, request: execution_pb.ReportExecutionRequest, context: grpc.aio.ServicerContext
    ) -> execution_pb.ReportExecutionResponse:
        v = Validator()
        v.identifier("action_id", request.action_id)
        v.enum("result", execution_pb.ExecutionResult, request.result, required=True)
        v.text("evidence_ref", request.evidence_ref, 512)
        v.struct("outputs", request.outputs)
        v.text("error_message", request.error_message)
        v.text("grant_token", request.grant_token, MAX_ID)
        cost_cents = request.cost_cents if request.HasField("cost_cents") else None
        if cost_cents is not None:
            v.cents("cost_cents", cost_cents)
        v.done()
        result = convert.enum_from_pb(
            execution_pb.ExecutionResult, "EXECUTION_RESULT", ExecutionResult, request.result
        )
        action = await decisions.report_execution(
            self.ctx,
            caller(),
            request.action_id,
            result,
            request.evidence_ref,
            json_format.MessageToDict(request.outputs),
            request.error_message,
            request.grant_token,
            cost_cents,
        )
        return execution_pb.ReportExecutionResponse(action=convert.action_to_pb(action))

    async def CompleteInstance(
        self, request: execution_pb.CompleteInstanceRequest, context: grpc.aio.ServicerContext
    ) -> execution_pb.CompleteInstanceResponse:
        _require_id("instance_id", request.instance_id)
        instance = await instances.complete_instance(self.ctx, caller(), request.instance_id)
        return execution_pb.CompleteInstanceResponse(instance=convert.instance_to_pb(instance))

    async def CancelInstance(
        self, request: execution_pb.CancelInstanceRequest, context: grpc.aio.ServicerContext
    ) -> execution_pb.CancelInstanceResponse:
        v = Validator()
        v.identifier("instance_id", request.instance_id)
        v.text("reason", request.reason)
        v.done()
        instance = await instances.cancel_instance(
            self.ctx, caller(), request.instance_id, request.reason
        )
        return execution_pb.CancelInstanceResponse(instance=convert.instance_to_pb(instance))

    async def GetInstance(
        self, request: execution_pb.GetInstanceRequest, context: grpc.aio.ServicerContext
    ) -> execution_pb.GetInstanceResponse:
        _require_id("instance_id", request.instance_id)
        instance = await instances.get_instance(self.ctx, caller(), request.instance_id)
        return execution_pb.GetInstanceResponse(instance=convert.instance_to_pb(instance))

    async def ListInstances(
        self, request: execution_pb.ListInstancesRequest, context: grpc.aio.ServicerContext
    ) -> execution_pb.ListInstancesResponse:
        v = Validator()
        v.identifier("tenant_id", request.tenant_id, required=False)
        v.enum("state", pb.InstanceState, request.state, required=False)
        v.page(request.page_size)
        v.done()
        state = (
            convert.enum_from_pb(pb.InstanceState, "INSTANCE_STATE", InstanceState, request.state)
            if request.state
            else None
        )
        found, token = await instances.list_instances(
            self.ctx, caller(), request.tenant_id, state, request.page_size, request.page_token
        )
        return execution_pb.ListInstancesResponse(
            instances=[convert.instance_to_pb(i) for i in found], next_page_token=token
        )

    async def CheckPlan(
        self, request: execution_pb.CheckPlanRequest, context: grpc.aio.ServicerContext
    ) -> execution_pb.CheckPlanResponse:
        v = Validator()
        v.identifier("instance_id", request.instance_id)
        _validate_plan(v, request)
        v.done()
        verdict = await plans.check_plan(
            self.ctx, caller(), request.instance_id, convert.message_to_json(request.plan)
        )
        return execution_pb.CheckPlanResponse(
            accepted=verdict.accepted,
            findings=[execution_pb.PlanFinding(**f.as_json()) for f in verdict.findings],
            plan_sha256=verdict.plan_sha256,
            revision=verdict.revision,
        )

    async def SubmitPlan(
        self, request: execution_pb.SubmitPlanRequest, context: grpc.aio.ServicerContext
    ) -> execution_pb.SubmitPlanResponse:
        v = Validator()
        v.identifier("instance_id", request.instance_id)
        _validate_plan(v, request)
        v.done()
        submitted = await plans.submit_plan(
            self.ctx, caller(), request.instance_id, convert.message_to_json(request.plan)
        )
        return execution_pb.SubmitPlanResponse(
            plan_sha256=submitted.plan.plan_sha256,
            steps=[
                execution_pb.PlanStepRoute(
                    step_id=s["id"],
                    tool=s["tool"],
                    effect=s["effect"],
                    gate_ids=s["gate_ids"],
                    reason=s["reason"],
                )
                for s in submitted.plan.steps()
            ],
            approval=convert.action_to_pb(submitted.approval) if submitted.approval else None,
            revision=submitted.revision,
        )

    async def RecordCheckpoint(
        self, request: execution_pb.RecordCheckpointRequest, context: grpc.aio.ServicerContext
    ) -> execution_pb.RecordCheckpointResponse:
        v = Validator()
        v.identifier("instance_id", request.instance_id)
        if not request.decision_id:
            v.fail("decision_id", "is required")
        elif not ID_PATTERN.fullmatch(request.decision_id):  # a plan's checkpoint id
            v.fail("decision_id", f"is not an id ({ID_PATTERN.pattern})")
        if not request.outcome:
            v.fail("outcome", "is required")
        elif len(request.outcome) > MAX_ID:
            v.fail("outcome", f"must be at most {MAX_ID} characters")
        elif not request.outcome.isprintable():
            v.fail("outcome", "must be printable text (no control characters)")
        v.refs("evidence_refs", request.evidence_refs)
        v.struct("outputs", request.outputs)
        v.done()
        record = await checkpoints.record_checkpoint(
            self.ctx,
            caller(),
            request.instance_id,
            request.decision_id,
            request.outcome,
            list(request.evidence_refs),
            convert.message_to_json(request.outputs),
        )
        return execution_pb.RecordCheckpointResponse(record=convert.record_to_pb(record))


class ApprovalService(approval_grpc.ApprovalServiceServicer):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def ListPendingApprovals(
        self, request: approval_pb.ListPendingApprovalsRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb.ListPendingApprovalsResponse:
        v = Validator()
        v.identifier("tenant_id", request.tenant_id, required=False)
        v.page(request.page_size)
        v.done()
        found, token = await decisions.list_pending(
            self.ctx, caller(), request.tenant_id, request.page_size, request.page_token
        )
        return approval_pb.ListPendingApprovalsResponse(
            actions=[convert.action_to_pb(a) for a in found], next_page_token=token
        )

    async def SubmitDecision(
        self, request: approval_pb.SubmitDecisionRequest, context: grpc.aio.ServicerContext
    ) -> approval_pb.SubmitDecisionResponse:
        v = Validator()
        v.identifier("action_id", request.action_id)
        v.enum("verdict", pb.Verdict, request.verdict, required=True)
        v.text("reason", request.reason)
        v.identifier("request_id", request.request_id)
        v.digest("evidence_snapshot_hash", request.evidence_snapshot_hash)
        if request.HasField("edited_params"):
            v.struct("edited_params", request.edited_params)
        v.done()
        edited = None
        if request.HasField("edited_params"):
            edited = json_format.MessageToDict(request.edited_params)
        action, record = await decisions.submit_decision(
            self.ctx,
            caller(),
            request.action_id,
            convert.enum_from_pb(pb.Verdict, "VERDICT", Verdict, request.verdict),
            request.reason,
            request.request_id,
            edited,
            request.evidence_snapshot_hash,
        )
        return approval_pb.SubmitDecisionResponse(
            action=convert.action_to_pb(action),
            record=convert.record_to_pb(record) if record else None,
        )

    async def WatchApprovals(
        self, request: approval_pb.WatchApprovalsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[approval_pb.WatchApprovalsResponse]:
        v = Validator()
        v.identifier("tenant_id", request.tenant_id, required=False)
        if request.after_cursor < 0:
            v.fail("after_cursor", "must not be negative")
        v.done()
        async for item in watch.watch_approvals(
            self.ctx, caller(), request.tenant_id, request.after_cursor
        ):
            if isinstance(item, Bookmark):
                yield approval_pb.WatchApprovalsResponse(bookmark_cursor=item.revision)
            else:
                yield approval_pb.WatchApprovalsResponse(change=convert.approval_change_to_pb(item))
            del item  # an idle stream keeps no change alive


class AuditService(audit_grpc.AuditServiceServicer):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def GetDecisionRecord(
        self, request: audit_pb.GetDecisionRecordRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb.GetDecisionRecordResponse:
        _require_id("record_id", request.record_id)
        record = await audit.get_record(self.ctx, caller(), request.record_id)
        return audit_pb.GetDecisionRecordResponse(record=convert.record_to_pb(record))

    async def ListDecisionRecords(
        self, request: audit_pb.ListDecisionRecordsRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb.ListDecisionRecordsResponse:
        v = Validator()
        v.identifier("tenant_id", request.tenant_id, required=False)
        v.identifier("instance_id", request.instance_id, required=False)
        v.page(request.page_size)
        v.done()
        found, token = await audit.list_records(
            self.ctx,
            caller(),
            request.tenant_id,
            request.instance_id,
            request.page_size,
            request.page_token,
        )
        return audit_pb.ListDecisionRecordsResponse(
            records=[convert.record_to_pb(r) for r in found], next_page_token=token
        )

    async def ListEvents(
        self, request: audit_pb.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb.ListEventsResponse:
        v = Validator()
        v.identifier("instance_id", request.instance_id)
        if request.after_revision < 0:
            v.fail("after_revision", "must not be negative")
        v.page(request.page_size)
        v.done()
        found, next_after = await audit.list_events(
            self.ctx, caller(), request.instance_id, request.after_revision, request.page_size
        )
        return audit_pb.ListEventsResponse(
            events=[convert.event_to_pb(e) for e in found], next_after_revision=next_after
        )

    async def VerifyChain(
        self, request: audit_pb.VerifyChainRequest, context: grpc.aio.ServicerContext
    ) -> audit_pb.VerifyChainResponse:
        _require_id("instance_id", request.instance_id)
        report = await chain.verify_chain(self.ctx, caller(), request.instance_id)
        response = audit_pb.VerifyChainResponse(
            intact=not report.broken,
            events_checked=report.events_checked,
            records_checked=report.records_checked,
            head_hash=report.head_hash,
        )
        if report.broken:
            first, *more = report.broken
            response.broken_revision = first.revision
            # Every break, the first one first, one a line.
            response.problem = "\n".join(
                [first.problem, *(f"revision {b.revision}: {b.problem}" for b in more)]
            )
        return response


def _validate_envelope(v: Validator, request: Any, prefix: str = "") -> None:
    """The InvokeAgent envelope (also EvaluatePolicy's, under `envelope.`)."""
    v.identifier(f"{prefix}request_id", request.request_id)
    v.identifier(f"{prefix}tenant_id", request.tenant_id)
    v.identifier(f"{prefix}session_id", request.session_id, required=False)
    v.identifier(f"{prefix}user.user_id", request.user.user_id)
    v.identifier(
        f"{prefix}user.delegation.auth_type", request.user.delegation.auth_type, required=False
    )
    v.refs(f"{prefix}user.delegation.scopes", request.user.delegation.scopes)
    v.identifier(f"{prefix}agent.agent_id", request.agent.agent_id)
    v.text(f"{prefix}agent.workload_identity", request.agent.workload_identity, MAX_ID * 4)
    v.identifier(f"{prefix}workflow_id", request.workflow_id, required=False)
    v.identifier(f"{prefix}workflow_version", request.workflow_version, required=False)
    v.refs(f"{prefix}context_pack_refs", request.context_pack_refs)
    v.text(f"{prefix}input.intent", request.input.intent, MAX_ID)
    v.text(f"{prefix}input.message", request.input.message)
    v.text(f"{prefix}input.channel", request.input.channel, MAX_ID)
    v.text(f"{prefix}input.locale", request.input.locale, MAX_ID)
    v.struct(f"{prefix}input.context", request.input.context)
    v.enum(f"{prefix}mode", pb.Mode, request.mode, required=False)
    v.number(f"{prefix}runtime.max_tool_calls", request.runtime.max_tool_calls)
    v.cents(f"{prefix}runtime.max_cost_cents", request.runtime.max_cost_cents)


def _validate_proposal(v: Validator, request: Any) -> None:
    """The `action` field of RequestDecision and EvaluatePolicy."""
    if not request.HasField("action"):
        v.fail("action", "is required")
        return
    action = request.action
    v.identifier("action.tool_call_id", action.tool_call_id)
    if not action.tool:
        v.fail("action.tool", "is required")
    elif len(action.tool) > MAX_ID or not TOOL.match(action.tool):
        v.fail("action.tool", "must look like adapter.capability (letters, digits, _ -)")
    v.struct("action.params", action.params)
    v.enum("action.risk_class", pb.RiskClass, action.risk_class, required=True)
    v.refs("action.evidence_refs", action.evidence_refs)
    v.cents("action.estimated_cost_cents", action.estimated_cost_cents)


def _validate_plan(
    v: Validator, request: execution_pb.CheckPlanRequest | execution_pb.SubmitPlanRequest
) -> None:
    """The wire-level limits of a plan (sizes, numbers in its JSON); its shape is checked
    by domain/plans.py, which names the same fields."""
    if not request.HasField("plan"):
        v.fail("plan", "is required")
        return
    if len(request.plan.steps) > MAX_STEPS:
        v.fail("plan.steps", f"at most {MAX_STEPS} steps")
        return
    for i, step in enumerate(request.plan.steps):
        v.struct(f"plan.steps[{i}].params", step.params)
        if step.HasField("execute_when"):
            condition = struct_pb2.Struct()
            condition.fields["execute_when"].CopyFrom(step.execute_when)
            v.struct(f"plan.steps[{i}]", condition)
        v.cents(f"plan.steps[{i}].estimated_cost_cents", step.estimated_cost_cents)


def _require_id(field: str, value: str) -> None:
    v = Validator()
    v.identifier(field, value)
    v.done()


class PolicyService(policy_grpc.PolicyServiceServicer):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    async def EvaluatePolicy(
        self, request: policy_pb.EvaluatePolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb.EvaluatePolicyResponse:
        v = Validator()
        subject = request.WhichOneof("subject")
        if subject is None:
            v.fail("subject", "give instance_id or envelope")
        elif subject == "instance_id":
            v.identifier("instance_id", request.instance_id)
        else:
            _validate_envelope(v, request.envelope, prefix="envelope.")
        _validate_proposal(v, request)
        v.done()
        envelope = None if subject == "instance_id" else convert.message_to_json(request.envelope)
        decision = await policies.evaluate(
            self.ctx,
            caller(),
            request.instance_id,
            envelope,
            convert.proposal_from_pb(request.action),
        )
        return convert.evaluation_to_pb(decision)

    async def GetPolicy(
        self, request: policy_pb.GetPolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb.GetPolicyResponse:
        return convert.policy_to_pb(self.ctx.policy.bundle, self.ctx.policy.gates())
