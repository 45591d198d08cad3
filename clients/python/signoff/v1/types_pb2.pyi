import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InstanceState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INSTANCE_STATE_UNSPECIFIED: _ClassVar[InstanceState]
    INSTANCE_STATE_RUNNING: _ClassVar[InstanceState]
    INSTANCE_STATE_WAITING_FOR_HUMAN: _ClassVar[InstanceState]
    INSTANCE_STATE_COMPLETED: _ClassVar[InstanceState]
    INSTANCE_STATE_TERMINATED: _ClassVar[InstanceState]

class ActionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACTION_STATE_UNSPECIFIED: _ClassVar[ActionState]
    ACTION_STATE_WAITING_FOR_HUMAN: _ClassVar[ActionState]
    ACTION_STATE_APPROVED: _ClassVar[ActionState]
    ACTION_STATE_REJECTED: _ClassVar[ActionState]
    ACTION_STATE_EXPIRED: _ClassVar[ActionState]
    ACTION_STATE_CANCELLED: _ClassVar[ActionState]
    ACTION_STATE_EXECUTING: _ClassVar[ActionState]
    ACTION_STATE_EXECUTED: _ClassVar[ActionState]
    ACTION_STATE_FAILED: _ClassVar[ActionState]

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    OUTCOME_APPROVED: _ClassVar[Outcome]
    OUTCOME_WAITING_FOR_HUMAN: _ClassVar[Outcome]
    OUTCOME_REJECTED: _ClassVar[Outcome]
    OUTCOME_TERMINATED: _ClassVar[Outcome]

class RiskClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RISK_CLASS_UNSPECIFIED: _ClassVar[RiskClass]
    RISK_CLASS_READ_ONLY: _ClassVar[RiskClass]
    RISK_CLASS_LOCAL_WRITE: _ClassVar[RiskClass]
    RISK_CLASS_NETWORK: _ClassVar[RiskClass]
    RISK_CLASS_DELEGATED: _ClassVar[RiskClass]
    RISK_CLASS_DESTRUCTIVE: _ClassVar[RiskClass]

class Mode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODE_UNSPECIFIED: _ClassVar[Mode]
    MODE_STREAM: _ClassVar[Mode]
    MODE_BATCH: _ClassVar[Mode]

class Verdict(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VERDICT_UNSPECIFIED: _ClassVar[Verdict]
    VERDICT_APPROVE: _ClassVar[Verdict]
    VERDICT_REJECT: _ClassVar[Verdict]

class GateState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GATE_STATE_UNSPECIFIED: _ClassVar[GateState]
    GATE_STATE_WAITING: _ClassVar[GateState]
    GATE_STATE_SATISFIED: _ClassVar[GateState]
    GATE_STATE_REJECTED: _ClassVar[GateState]
    GATE_STATE_EXPIRED: _ClassVar[GateState]
    GATE_STATE_ESCALATED: _ClassVar[GateState]
    GATE_STATE_CLOSED: _ClassVar[GateState]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_INSTANCE_CREATED: _ClassVar[EventType]
    EVENT_TYPE_ACTION_REQUESTED: _ClassVar[EventType]
    EVENT_TYPE_ACTION_DECIDED: _ClassVar[EventType]
    EVENT_TYPE_ACTION_CANCELLED: _ClassVar[EventType]
    EVENT_TYPE_ACTION_EXECUTION_REPORTED: _ClassVar[EventType]
    EVENT_TYPE_INSTANCE_COMPLETED: _ClassVar[EventType]
    EVENT_TYPE_INSTANCE_TERMINATED: _ClassVar[EventType]
    EVENT_TYPE_ACTION_VOTED: _ClassVar[EventType]
    EVENT_TYPE_ACTION_ESCALATED: _ClassVar[EventType]
    EVENT_TYPE_ACTION_EXPIRED: _ClassVar[EventType]
    EVENT_TYPE_ACTION_REMINDER: _ClassVar[EventType]
    EVENT_TYPE_ACTION_EXECUTING: _ClassVar[EventType]
    EVENT_TYPE_PLAN_CHECKED: _ClassVar[EventType]
    EVENT_TYPE_CHECKPOINT_RECORDED: _ClassVar[EventType]
    EVENT_TYPE_PLAN_SUBMITTED: _ClassVar[EventType]

class DecisionStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_STATUS_UNSPECIFIED: _ClassVar[DecisionStatus]
    DECISION_STATUS_DECIDED: _ClassVar[DecisionStatus]
    DECISION_STATUS_ESCALATED: _ClassVar[DecisionStatus]
    DECISION_STATUS_EXPIRED: _ClassVar[DecisionStatus]
    DECISION_STATUS_CANCELLED: _ClassVar[DecisionStatus]
INSTANCE_STATE_UNSPECIFIED: InstanceState
INSTANCE_STATE_RUNNING: InstanceState
INSTANCE_STATE_WAITING_FOR_HUMAN: InstanceState
INSTANCE_STATE_COMPLETED: InstanceState
INSTANCE_STATE_TERMINATED: InstanceState
ACTION_STATE_UNSPECIFIED: ActionState
ACTION_STATE_WAITING_FOR_HUMAN: ActionState
ACTION_STATE_APPROVED: ActionState
ACTION_STATE_REJECTED: ActionState
ACTION_STATE_EXPIRED: ActionState
ACTION_STATE_CANCELLED: ActionState
ACTION_STATE_EXECUTING: ActionState
ACTION_STATE_EXECUTED: ActionState
ACTION_STATE_FAILED: ActionState
OUTCOME_UNSPECIFIED: Outcome
OUTCOME_APPROVED: Outcome
OUTCOME_WAITING_FOR_HUMAN: Outcome
OUTCOME_REJECTED: Outcome
OUTCOME_TERMINATED: Outcome
RISK_CLASS_UNSPECIFIED: RiskClass
RISK_CLASS_READ_ONLY: RiskClass
RISK_CLASS_LOCAL_WRITE: RiskClass
RISK_CLASS_NETWORK: RiskClass
RISK_CLASS_DELEGATED: RiskClass
RISK_CLASS_DESTRUCTIVE: RiskClass
MODE_UNSPECIFIED: Mode
MODE_STREAM: Mode
MODE_BATCH: Mode
VERDICT_UNSPECIFIED: Verdict
VERDICT_APPROVE: Verdict
VERDICT_REJECT: Verdict
GATE_STATE_UNSPECIFIED: GateState
GATE_STATE_WAITING: GateState
GATE_STATE_SATISFIED: GateState
GATE_STATE_REJECTED: GateState
GATE_STATE_EXPIRED: GateState
GATE_STATE_ESCALATED: GateState
GATE_STATE_CLOSED: GateState
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_INSTANCE_CREATED: EventType
EVENT_TYPE_ACTION_REQUESTED: EventType
EVENT_TYPE_ACTION_DECIDED: EventType
EVENT_TYPE_ACTION_CANCELLED: EventType
EVENT_TYPE_ACTION_EXECUTION_REPORTED: EventType
EVENT_TYPE_INSTANCE_COMPLETED: EventType
EVENT_TYPE_INSTANCE_TERMINATED: EventType
EVENT_TYPE_ACTION_VOTED: EventType
EVENT_TYPE_ACTION_ESCALATED: EventType
EVENT_TYPE_ACTION_EXPIRED: EventType
EVENT_TYPE_ACTION_REMINDER: EventType
EVENT_TYPE_ACTION_EXECUTING: EventType
EVENT_TYPE_PLAN_CHECKED: EventType
EVENT_TYPE_CHECKPOINT_RECORDED: EventType
EVENT_TYPE_PLAN_SUBMITTED: EventType
DECISION_STATUS_UNSPECIFIED: DecisionStatus
DECISION_STATUS_DECIDED: DecisionStatus
DECISION_STATUS_ESCALATED: DecisionStatus
DECISION_STATUS_EXPIRED: DecisionStatus
DECISION_STATUS_CANCELLED: DecisionStatus

class Delegation(_message.Message):
    __slots__ = ("auth_type", "scopes")
    AUTH_TYPE_FIELD_NUMBER: _ClassVar[int]
    SCOPES_FIELD_NUMBER: _ClassVar[int]
    auth_type: str
    scopes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, auth_type: _Optional[str] = ..., scopes: _Optional[_Iterable[str]] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("user_id", "delegation")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DELEGATION_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    delegation: Delegation
    def __init__(self, user_id: _Optional[str] = ..., delegation: _Optional[_Union[Delegation, _Mapping]] = ...) -> None: ...

class Agent(_message.Message):
    __slots__ = ("agent_id", "workload_identity")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_IDENTITY_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    workload_identity: str
    def __init__(self, agent_id: _Optional[str] = ..., workload_identity: _Optional[str] = ...) -> None: ...

class Input(_message.Message):
    __slots__ = ("intent", "message", "channel", "locale", "context")
    INTENT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    LOCALE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    intent: str
    message: str
    channel: str
    locale: str
    context: _struct_pb2.Struct
    def __init__(self, intent: _Optional[str] = ..., message: _Optional[str] = ..., channel: _Optional[str] = ..., locale: _Optional[str] = ..., context: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Runtime(_message.Message):
    __slots__ = ("max_tool_calls", "max_cost_cents")
    MAX_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_CENTS_FIELD_NUMBER: _ClassVar[int]
    max_tool_calls: int
    max_cost_cents: float
    def __init__(self, max_tool_calls: _Optional[int] = ..., max_cost_cents: _Optional[float] = ...) -> None: ...

class BudgetReport(_message.Message):
    __slots__ = ("tool_calls_used", "max_tool_calls", "cost_spent_cents", "cost_reserved_cents", "max_cost_cents", "cost_remaining_cents")
    TOOL_CALLS_USED_FIELD_NUMBER: _ClassVar[int]
    MAX_TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    COST_SPENT_CENTS_FIELD_NUMBER: _ClassVar[int]
    COST_RESERVED_CENTS_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_CENTS_FIELD_NUMBER: _ClassVar[int]
    COST_REMAINING_CENTS_FIELD_NUMBER: _ClassVar[int]
    tool_calls_used: int
    max_tool_calls: int
    cost_spent_cents: float
    cost_reserved_cents: float
    max_cost_cents: float
    cost_remaining_cents: float
    def __init__(self, tool_calls_used: _Optional[int] = ..., max_tool_calls: _Optional[int] = ..., cost_spent_cents: _Optional[float] = ..., cost_reserved_cents: _Optional[float] = ..., max_cost_cents: _Optional[float] = ..., cost_remaining_cents: _Optional[float] = ...) -> None: ...

class Instance(_message.Message):
    __slots__ = ("instance_id", "request_id", "session_id", "tenant_id", "user", "agent", "workflow_id", "workflow_version", "context_pack_refs", "input", "mode", "runtime", "state", "revision", "tool_calls_used", "create_time", "update_time", "trace_id", "budget", "compiled_context")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
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
    STATE_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_USED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    COMPILED_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    request_id: str
    session_id: str
    tenant_id: str
    user: User
    agent: Agent
    workflow_id: str
    workflow_version: str
    context_pack_refs: _containers.RepeatedScalarFieldContainer[str]
    input: Input
    mode: Mode
    runtime: Runtime
    state: InstanceState
    revision: int
    tool_calls_used: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    trace_id: str
    budget: BudgetReport
    compiled_context: CompiledContext
    def __init__(self, instance_id: _Optional[str] = ..., request_id: _Optional[str] = ..., session_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., user: _Optional[_Union[User, _Mapping]] = ..., agent: _Optional[_Union[Agent, _Mapping]] = ..., workflow_id: _Optional[str] = ..., workflow_version: _Optional[str] = ..., context_pack_refs: _Optional[_Iterable[str]] = ..., input: _Optional[_Union[Input, _Mapping]] = ..., mode: _Optional[_Union[Mode, str]] = ..., runtime: _Optional[_Union[Runtime, _Mapping]] = ..., state: _Optional[_Union[InstanceState, str]] = ..., revision: _Optional[int] = ..., tool_calls_used: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace_id: _Optional[str] = ..., budget: _Optional[_Union[BudgetReport, _Mapping]] = ..., compiled_context: _Optional[_Union[CompiledContext, _Mapping]] = ...) -> None: ...

class CompiledContext(_message.Message):
    __slots__ = ("manifests", "runtime_controls", "sha256")
    MANIFESTS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_CONTROLS_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    manifests: Manifests
    runtime_controls: ControlsActive
    sha256: str
    def __init__(self, manifests: _Optional[_Union[Manifests, _Mapping]] = ..., runtime_controls: _Optional[_Union[ControlsActive, _Mapping]] = ..., sha256: _Optional[str] = ...) -> None: ...

class Manifests(_message.Message):
    __slots__ = ("policy_manifest", "tool_manifest", "evidence_manifest", "tool_bindings")
    class ToolBindingsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: ToolBinding
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[ToolBinding, _Mapping]] = ...) -> None: ...
    POLICY_MANIFEST_FIELD_NUMBER: _ClassVar[int]
    TOOL_MANIFEST_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_MANIFEST_FIELD_NUMBER: _ClassVar[int]
    TOOL_BINDINGS_FIELD_NUMBER: _ClassVar[int]
    policy_manifest: _containers.RepeatedCompositeFieldContainer[PolicyManifestEntry]
    tool_manifest: _containers.RepeatedCompositeFieldContainer[ToolManifestEntry]
    evidence_manifest: _containers.RepeatedCompositeFieldContainer[EvidenceManifestEntry]
    tool_bindings: _containers.MessageMap[str, ToolBinding]
    def __init__(self, policy_manifest: _Optional[_Iterable[_Union[PolicyManifestEntry, _Mapping]]] = ..., tool_manifest: _Optional[_Iterable[_Union[ToolManifestEntry, _Mapping]]] = ..., evidence_manifest: _Optional[_Iterable[_Union[EvidenceManifestEntry, _Mapping]]] = ..., tool_bindings: _Optional[_Mapping[str, ToolBinding]] = ...) -> None: ...

class PolicyManifestEntry(_message.Message):
    __slots__ = ("bundle_id", "rule_ids")
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    RULE_IDS_FIELD_NUMBER: _ClassVar[int]
    bundle_id: str
    rule_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, bundle_id: _Optional[str] = ..., rule_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ToolManifestEntry(_message.Message):
    __slots__ = ("adapter_id", "capabilities")
    ADAPTER_ID_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    adapter_id: str
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, adapter_id: _Optional[str] = ..., capabilities: _Optional[_Iterable[str]] = ...) -> None: ...

class EvidenceManifestEntry(_message.Message):
    __slots__ = ("evidence_ref",)
    EVIDENCE_REF_FIELD_NUMBER: _ClassVar[int]
    evidence_ref: str
    def __init__(self, evidence_ref: _Optional[str] = ...) -> None: ...

class ToolBinding(_message.Message):
    __slots__ = ("approval_mode", "params_schema")
    APPROVAL_MODE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    approval_mode: RiskClass
    params_schema: _struct_pb2.Struct
    def __init__(self, approval_mode: _Optional[_Union[RiskClass, str]] = ..., params_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ProposedAction(_message.Message):
    __slots__ = ("tool_call_id", "tool", "params", "risk_class", "evidence_refs", "estimated_cost_cents")
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    RISK_CLASS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_REFS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_CENTS_FIELD_NUMBER: _ClassVar[int]
    tool_call_id: str
    tool: str
    params: _struct_pb2.Struct
    risk_class: RiskClass
    evidence_refs: _containers.RepeatedScalarFieldContainer[str]
    estimated_cost_cents: float
    def __init__(self, tool_call_id: _Optional[str] = ..., tool: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., risk_class: _Optional[_Union[RiskClass, str]] = ..., evidence_refs: _Optional[_Iterable[str]] = ..., estimated_cost_cents: _Optional[float] = ...) -> None: ...

class Action(_message.Message):
    __slots__ = ("action_id", "instance_id", "tenant_id", "tool_call_id", "tool", "params", "risk_class", "evidence_refs", "action_sha256", "state", "gate_ids", "decided_by", "decision_reason", "create_time", "decide_time", "execution_evidence_ref", "gates", "proposed_sha256", "estimated_cost_cents", "cost_cents")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    RISK_CLASS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_REFS_FIELD_NUMBER: _ClassVar[int]
    ACTION_SHA256_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    GATE_IDS_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    DECISION_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DECIDE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_EVIDENCE_REF_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_SHA256_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_CENTS_FIELD_NUMBER: _ClassVar[int]
    COST_CENTS_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    instance_id: str
    tenant_id: str
    tool_call_id: str
    tool: str
    params: _struct_pb2.Struct
    risk_class: RiskClass
    evidence_refs: _containers.RepeatedScalarFieldContainer[str]
    action_sha256: str
    state: ActionState
    gate_ids: _containers.RepeatedScalarFieldContainer[str]
    decided_by: str
    decision_reason: str
    create_time: _timestamp_pb2.Timestamp
    decide_time: _timestamp_pb2.Timestamp
    execution_evidence_ref: str
    gates: _containers.RepeatedCompositeFieldContainer[GateStatus]
    proposed_sha256: str
    estimated_cost_cents: float
    cost_cents: float
    def __init__(self, action_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., tool_call_id: _Optional[str] = ..., tool: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., risk_class: _Optional[_Union[RiskClass, str]] = ..., evidence_refs: _Optional[_Iterable[str]] = ..., action_sha256: _Optional[str] = ..., state: _Optional[_Union[ActionState, str]] = ..., gate_ids: _Optional[_Iterable[str]] = ..., decided_by: _Optional[str] = ..., decision_reason: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., decide_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., execution_evidence_ref: _Optional[str] = ..., gates: _Optional[_Iterable[_Union[GateStatus, _Mapping]]] = ..., proposed_sha256: _Optional[str] = ..., estimated_cost_cents: _Optional[float] = ..., cost_cents: _Optional[float] = ...) -> None: ...

class GateStatus(_message.Message):
    __slots__ = ("gate_id", "state", "quorum", "approvals", "rejections", "deadline", "escalated_from")
    GATE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    ESCALATED_FROM_FIELD_NUMBER: _ClassVar[int]
    gate_id: str
    state: GateState
    quorum: int
    approvals: int
    rejections: int
    deadline: _timestamp_pb2.Timestamp
    escalated_from: str
    def __init__(self, gate_id: _Optional[str] = ..., state: _Optional[_Union[GateState, str]] = ..., quorum: _Optional[int] = ..., approvals: _Optional[int] = ..., rejections: _Optional[int] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., escalated_from: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("instance_id", "revision", "type", "time", "instance_state", "action_id", "action_state", "outcome", "actor", "reason", "record_id", "tool", "gate_id", "controls", "record_sha256", "prev_hash", "hash", "trace_id", "budget", "plan_sha256")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_STATE_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_STATE_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    GATE_ID_FIELD_NUMBER: _ClassVar[int]
    CONTROLS_FIELD_NUMBER: _ClassVar[int]
    RECORD_SHA256_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    PLAN_SHA256_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    revision: int
    type: EventType
    time: _timestamp_pb2.Timestamp
    instance_state: InstanceState
    action_id: str
    action_state: ActionState
    outcome: Outcome
    actor: str
    reason: str
    record_id: str
    tool: str
    gate_id: str
    controls: ControlsActive
    record_sha256: str
    prev_hash: str
    hash: str
    trace_id: str
    budget: BudgetReport
    plan_sha256: str
    def __init__(self, instance_id: _Optional[str] = ..., revision: _Optional[int] = ..., type: _Optional[_Union[EventType, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., instance_state: _Optional[_Union[InstanceState, str]] = ..., action_id: _Optional[str] = ..., action_state: _Optional[_Union[ActionState, str]] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., actor: _Optional[str] = ..., reason: _Optional[str] = ..., record_id: _Optional[str] = ..., tool: _Optional[str] = ..., gate_id: _Optional[str] = ..., controls: _Optional[_Union[ControlsActive, _Mapping]] = ..., record_sha256: _Optional[str] = ..., prev_hash: _Optional[str] = ..., hash: _Optional[str] = ..., trace_id: _Optional[str] = ..., budget: _Optional[_Union[BudgetReport, _Mapping]] = ..., plan_sha256: _Optional[str] = ...) -> None: ...

class Approval(_message.Message):
    __slots__ = ("gate_id", "approver", "approval_mode_effective", "evidence_snapshot_hash", "verdict", "reason", "time", "params_diff")
    GATE_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_MODE_EFFECTIVE_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_SNAPSHOT_HASH_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_DIFF_FIELD_NUMBER: _ClassVar[int]
    gate_id: str
    approver: str
    approval_mode_effective: str
    evidence_snapshot_hash: str
    verdict: Verdict
    reason: str
    time: _timestamp_pb2.Timestamp
    params_diff: _struct_pb2.Struct
    def __init__(self, gate_id: _Optional[str] = ..., approver: _Optional[str] = ..., approval_mode_effective: _Optional[str] = ..., evidence_snapshot_hash: _Optional[str] = ..., verdict: _Optional[_Union[Verdict, str]] = ..., reason: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., params_diff: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ControlsActive(_message.Message):
    __slots__ = ("approval_gates_active", "must_refuse", "must_escalate", "redaction_rules_active", "policy")
    APPROVAL_GATES_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    MUST_REFUSE_FIELD_NUMBER: _ClassVar[int]
    MUST_ESCALATE_FIELD_NUMBER: _ClassVar[int]
    REDACTION_RULES_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    approval_gates_active: _containers.RepeatedScalarFieldContainer[str]
    must_refuse: _containers.RepeatedScalarFieldContainer[str]
    must_escalate: _containers.RepeatedScalarFieldContainer[str]
    redaction_rules_active: _containers.RepeatedScalarFieldContainer[str]
    policy: PolicyRef
    def __init__(self, approval_gates_active: _Optional[_Iterable[str]] = ..., must_refuse: _Optional[_Iterable[str]] = ..., must_escalate: _Optional[_Iterable[str]] = ..., redaction_rules_active: _Optional[_Iterable[str]] = ..., policy: _Optional[_Union[PolicyRef, _Mapping]] = ...) -> None: ...

class PolicyRef(_message.Message):
    __slots__ = ("bundle_id", "version", "sha256", "rule_ids")
    BUNDLE_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    RULE_IDS_FIELD_NUMBER: _ClassVar[int]
    bundle_id: str
    version: str
    sha256: str
    rule_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, bundle_id: _Optional[str] = ..., version: _Optional[str] = ..., sha256: _Optional[str] = ..., rule_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class DecisionRecord(_message.Message):
    __slots__ = ("record_id", "decision_key", "status", "outcome", "outputs", "evidence_refs", "approvals", "controls_active", "trace_id", "tenant_id", "instance_id", "action_id", "tool", "action_sha256", "revision", "create_time", "execution_state", "estimated_cost_cents", "cost_cents", "budget", "compiled_context_sha256", "checkpoint_outcome", "plan_approval")
    RECORD_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_REFS_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    CONTROLS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    ACTION_SHA256_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_STATE_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_CENTS_FIELD_NUMBER: _ClassVar[int]
    COST_CENTS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    COMPILED_CONTEXT_SHA256_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    PLAN_APPROVAL_FIELD_NUMBER: _ClassVar[int]
    record_id: str
    decision_key: str
    status: DecisionStatus
    outcome: Outcome
    outputs: _struct_pb2.Struct
    evidence_refs: _containers.RepeatedScalarFieldContainer[str]
    approvals: _containers.RepeatedCompositeFieldContainer[Approval]
    controls_active: ControlsActive
    trace_id: str
    tenant_id: str
    instance_id: str
    action_id: str
    tool: str
    action_sha256: str
    revision: int
    create_time: _timestamp_pb2.Timestamp
    execution_state: ActionState
    estimated_cost_cents: float
    cost_cents: float
    budget: BudgetReport
    compiled_context_sha256: str
    checkpoint_outcome: str
    plan_approval: PlanApprovalRef
    def __init__(self, record_id: _Optional[str] = ..., decision_key: _Optional[str] = ..., status: _Optional[_Union[DecisionStatus, str]] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., outputs: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., evidence_refs: _Optional[_Iterable[str]] = ..., approvals: _Optional[_Iterable[_Union[Approval, _Mapping]]] = ..., controls_active: _Optional[_Union[ControlsActive, _Mapping]] = ..., trace_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., action_id: _Optional[str] = ..., tool: _Optional[str] = ..., action_sha256: _Optional[str] = ..., revision: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., execution_state: _Optional[_Union[ActionState, str]] = ..., estimated_cost_cents: _Optional[float] = ..., cost_cents: _Optional[float] = ..., budget: _Optional[_Union[BudgetReport, _Mapping]] = ..., compiled_context_sha256: _Optional[str] = ..., checkpoint_outcome: _Optional[str] = ..., plan_approval: _Optional[_Union[PlanApprovalRef, _Mapping]] = ...) -> None: ...

class PlanApprovalRef(_message.Message):
    __slots__ = ("action_id", "plan_id", "plan_sha256", "step_id", "approvers")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    PLAN_SHA256_FIELD_NUMBER: _ClassVar[int]
    STEP_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVERS_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    plan_id: str
    plan_sha256: str
    step_id: str
    approvers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, action_id: _Optional[str] = ..., plan_id: _Optional[str] = ..., plan_sha256: _Optional[str] = ..., step_id: _Optional[str] = ..., approvers: _Optional[_Iterable[str]] = ...) -> None: ...
