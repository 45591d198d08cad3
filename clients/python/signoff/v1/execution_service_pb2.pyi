import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from signoff.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExecutionResult(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXECUTION_RESULT_UNSPECIFIED: _ClassVar[ExecutionResult]
    EXECUTION_RESULT_SUCCEEDED: _ClassVar[ExecutionResult]
    EXECUTION_RESULT_FAILED: _ClassVar[ExecutionResult]
EXECUTION_RESULT_UNSPECIFIED: ExecutionResult
EXECUTION_RESULT_SUCCEEDED: ExecutionResult
EXECUTION_RESULT_FAILED: ExecutionResult

class Plan(_message.Message):
    __slots__ = ("plan_id", "intent", "steps", "decision_checkpoints")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    INTENT_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    DECISION_CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    intent: str
    steps: _containers.RepeatedCompositeFieldContainer[PlanStep]
    decision_checkpoints: _containers.RepeatedCompositeFieldContainer[DecisionCheckpoint]
    def __init__(self, plan_id: _Optional[str] = ..., intent: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[PlanStep, _Mapping]]] = ..., decision_checkpoints: _Optional[_Iterable[_Union[DecisionCheckpoint, _Mapping]]] = ...) -> None: ...

class PlanStep(_message.Message):
    __slots__ = ("id", "tool", "params", "depends_on", "approval_mode", "requires", "execute_when", "estimated_cost_cents")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_MODE_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_FIELD_NUMBER: _ClassVar[int]
    EXECUTE_WHEN_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_CENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    tool: str
    params: _struct_pb2.Struct
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    approval_mode: _types_pb2.RiskClass
    requires: _containers.RepeatedScalarFieldContainer[str]
    execute_when: _struct_pb2.Value
    estimated_cost_cents: float
    def __init__(self, id: _Optional[str] = ..., tool: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., depends_on: _Optional[_Iterable[str]] = ..., approval_mode: _Optional[_Union[_types_pb2.RiskClass, str]] = ..., requires: _Optional[_Iterable[str]] = ..., execute_when: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., estimated_cost_cents: _Optional[float] = ...) -> None: ...

class DecisionCheckpoint(_message.Message):
    __slots__ = ("decision_id", "after_step")
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_STEP_FIELD_NUMBER: _ClassVar[int]
    decision_id: str
    after_step: str
    def __init__(self, decision_id: _Optional[str] = ..., after_step: _Optional[str] = ...) -> None: ...

class CheckPlanRequest(_message.Message):
    __slots__ = ("instance_id", "plan")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    plan: Plan
    def __init__(self, instance_id: _Optional[str] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class PlanFinding(_message.Message):
    __slots__ = ("reason", "step_id", "message")
    REASON_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    reason: str
    step_id: str
    message: str
    def __init__(self, reason: _Optional[str] = ..., step_id: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class CheckPlanResponse(_message.Message):
    __slots__ = ("accepted", "findings", "plan_sha256", "revision")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    PLAN_SHA256_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    findings: _containers.RepeatedCompositeFieldContainer[PlanFinding]
    plan_sha256: str
    revision: int
    def __init__(self, accepted: _Optional[bool] = ..., findings: _Optional[_Iterable[_Union[PlanFinding, _Mapping]]] = ..., plan_sha256: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class RecordCheckpointRequest(_message.Message):
    __slots__ = ("instance_id", "decision_id", "outcome", "evidence_refs", "outputs")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_REFS_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    decision_id: str
    outcome: str
    evidence_refs: _containers.RepeatedScalarFieldContainer[str]
    outputs: _struct_pb2.Struct
    def __init__(self, instance_id: _Optional[str] = ..., decision_id: _Optional[str] = ..., outcome: _Optional[str] = ..., evidence_refs: _Optional[_Iterable[str]] = ..., outputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class SubmitPlanRequest(_message.Message):
    __slots__ = ("instance_id", "plan")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    plan: Plan
    def __init__(self, instance_id: _Optional[str] = ..., plan: _Optional[_Union[Plan, _Mapping]] = ...) -> None: ...

class PlanStepRoute(_message.Message):
    __slots__ = ("step_id", "tool", "effect", "gate_ids", "reason")
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    GATE_IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    step_id: str
    tool: str
    effect: str
    gate_ids: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    def __init__(self, step_id: _Optional[str] = ..., tool: _Optional[str] = ..., effect: _Optional[str] = ..., gate_ids: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ...) -> None: ...

class SubmitPlanResponse(_message.Message):
    __slots__ = ("plan_sha256", "steps", "approval", "revision")
    PLAN_SHA256_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    plan_sha256: str
    steps: _containers.RepeatedCompositeFieldContainer[PlanStepRoute]
    approval: _types_pb2.Action
    revision: int
    def __init__(self, plan_sha256: _Optional[str] = ..., steps: _Optional[_Iterable[_Union[PlanStepRoute, _Mapping]]] = ..., approval: _Optional[_Union[_types_pb2.Action, _Mapping]] = ..., revision: _Optional[int] = ...) -> None: ...

class RecordCheckpointResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: _types_pb2.DecisionRecord
    def __init__(self, record: _Optional[_Union[_types_pb2.DecisionRecord, _Mapping]] = ...) -> None: ...

class InvokeAgentRequest(_message.Message):
    __slots__ = ("request_id", "session_id", "tenant_id", "user", "agent", "workflow_id", "workflow_version", "context_pack_refs", "input", "mode", "runtime")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_PACK_REFS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    session_id: str
    tenant_id: str
    user: _types_pb2.User
    agent: _types_pb2.Agent
    workflow_id: str
    workflow_version: str
    context_pack_refs: _containers.RepeatedScalarFieldContainer[str]
    input: _types_pb2.Input
    mode: _types_pb2.Mode
    runtime: _types_pb2.Runtime
    def __init__(self, request_id: _Optional[str] = ..., session_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., user: _Optional[_Union[_types_pb2.User, _Mapping]] = ..., agent: _Optional[_Union[_types_pb2.Agent, _Mapping]] = ..., workflow_id: _Optional[str] = ..., workflow_version: _Optional[str] = ..., context_pack_refs: _Optional[_Iterable[str]] = ..., input: _Optional[_Union[_types_pb2.Input, _Mapping]] = ..., mode: _Optional[_Union[_types_pb2.Mode, str]] = ..., runtime: _Optional[_Union[_types_pb2.Runtime, _Mapping]] = ...) -> None: ...

class InvokeAgentResponse(_message.Message):
    __slots__ = ("instance",)
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    instance: _types_pb2.Instance
    def __init__(self, instance: _Optional[_Union[_types_pb2.Instance, _Mapping]] = ...) -> None: ...

class RequestDecisionRequest(_message.Message):
    __slots__ = ("instance_id", "action")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    action: _types_pb2.ProposedAction
    def __init__(self, instance_id: _Optional[str] = ..., action: _Optional[_Union[_types_pb2.ProposedAction, _Mapping]] = ...) -> None: ...

class RequestDecisionResponse(_message.Message):
    __slots__ = ("outcome", "action_id", "action_sha256", "gate_ids", "reason", "action", "revision", "controls", "grant_token", "grant_expire_time")
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_SHA256_FIELD_NUMBER: _ClassVar[int]
    GATE_IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CONTROLS_FIELD_NUMBER: _ClassVar[int]
    GRANT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    GRANT_EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    outcome: _types_pb2.Outcome
    action_id: str
    action_sha256: str
    gate_ids: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    action: _types_pb2.Action
    revision: int
    controls: _types_pb2.ControlsActive
    grant_token: str
    grant_expire_time: _timestamp_pb2.Timestamp
    def __init__(self, outcome: _Optional[_Union[_types_pb2.Outcome, str]] = ..., action_id: _Optional[str] = ..., action_sha256: _Optional[str] = ..., gate_ids: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ..., action: _Optional[_Union[_types_pb2.Action, _Mapping]] = ..., revision: _Optional[int] = ..., controls: _Optional[_Union[_types_pb2.ControlsActive, _Mapping]] = ..., grant_token: _Optional[str] = ..., grant_expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ConsumeGrantRequest(_message.Message):
    __slots__ = ("action_id", "grant_token")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    GRANT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    grant_token: str
    def __init__(self, action_id: _Optional[str] = ..., grant_token: _Optional[str] = ...) -> None: ...

class ConsumeGrantResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: _types_pb2.Action
    def __init__(self, action: _Optional[_Union[_types_pb2.Action, _Mapping]] = ...) -> None: ...

class WatchInstanceRequest(_message.Message):
    __slots__ = ("instance_id", "after_revision")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_REVISION_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    after_revision: int
    def __init__(self, instance_id: _Optional[str] = ..., after_revision: _Optional[int] = ...) -> None: ...

class Bookmark(_message.Message):
    __slots__ = ("revision", "time")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    revision: int
    time: _timestamp_pb2.Timestamp
    def __init__(self, revision: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WatchInstanceResponse(_message.Message):
    __slots__ = ("event", "bookmark")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    BOOKMARK_FIELD_NUMBER: _ClassVar[int]
    event: _types_pb2.Event
    bookmark: Bookmark
    def __init__(self, event: _Optional[_Union[_types_pb2.Event, _Mapping]] = ..., bookmark: _Optional[_Union[Bookmark, _Mapping]] = ...) -> None: ...

class ReportExecutionRequest(_message.Message):
    __slots__ = ("action_id", "result", "evidence_ref", "outputs", "error_message", "grant_token", "cost_cents")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_REF_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    GRANT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    COST_CENTS_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    result: ExecutionResult
    evidence_ref: str
    outputs: _struct_pb2.Struct
    error_message: str
    grant_token: str
    cost_cents: float
    def __init__(self, action_id: _Optional[str] = ..., result: _Optional[_Union[ExecutionResult, str]] = ..., evidence_ref: _Optional[str] = ..., outputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., error_message: _Optional[str] = ..., grant_token: _Optional[str] = ..., cost_cents: _Optional[float] = ...) -> None: ...

class ReportExecutionResponse(_message.Message):
    __slots__ = ("action",)
    ACTION_FIELD_NUMBER: _ClassVar[int]
    action: _types_pb2.Action
    def __init__(self, action: _Optional[_Union[_types_pb2.Action, _Mapping]] = ...) -> None: ...

class CompleteInstanceRequest(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class CompleteInstanceResponse(_message.Message):
    __slots__ = ("instance",)
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    instance: _types_pb2.Instance
    def __init__(self, instance: _Optional[_Union[_types_pb2.Instance, _Mapping]] = ...) -> None: ...

class CancelInstanceRequest(_message.Message):
    __slots__ = ("instance_id", "reason")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    reason: str
    def __init__(self, instance_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelInstanceResponse(_message.Message):
    __slots__ = ("instance",)
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    instance: _types_pb2.Instance
    def __init__(self, instance: _Optional[_Union[_types_pb2.Instance, _Mapping]] = ...) -> None: ...

class GetInstanceRequest(_message.Message):
    __slots__ = ("instance_id",)
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    def __init__(self, instance_id: _Optional[str] = ...) -> None: ...

class GetInstanceResponse(_message.Message):
    __slots__ = ("instance",)
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    instance: _types_pb2.Instance
    def __init__(self, instance: _Optional[_Union[_types_pb2.Instance, _Mapping]] = ...) -> None: ...

class ListInstancesRequest(_message.Message):
    __slots__ = ("tenant_id", "state", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    state: _types_pb2.InstanceState
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., state: _Optional[_Union[_types_pb2.InstanceState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListInstancesResponse(_message.Message):
    __slots__ = ("instances", "next_page_token")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[_types_pb2.Instance]
    next_page_token: str
    def __init__(self, instances: _Optional[_Iterable[_Union[_types_pb2.Instance, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
