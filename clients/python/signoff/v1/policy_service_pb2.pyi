from signoff.v1 import execution_service_pb2 as _execution_service_pb2
from signoff.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Effect(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EFFECT_UNSPECIFIED: _ClassVar[Effect]
    EFFECT_ALLOW: _ClassVar[Effect]
    EFFECT_REQUIRE_APPROVAL: _ClassVar[Effect]
    EFFECT_DENY: _ClassVar[Effect]
EFFECT_UNSPECIFIED: Effect
EFFECT_ALLOW: Effect
EFFECT_REQUIRE_APPROVAL: Effect
EFFECT_DENY: Effect

class EvaluatePolicyRequest(_message.Message):
    __slots__ = ("instance_id", "envelope", "action")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ENVELOPE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    envelope: _execution_service_pb2.InvokeAgentRequest
    action: _types_pb2.ProposedAction
    def __init__(self, instance_id: _Optional[str] = ..., envelope: _Optional[_Union[_execution_service_pb2.InvokeAgentRequest, _Mapping]] = ..., action: _Optional[_Union[_types_pb2.ProposedAction, _Mapping]] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("rule_id", "effect", "reason", "gate_id", "refuse", "escalate_to", "redact")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    GATE_ID_FIELD_NUMBER: _ClassVar[int]
    REFUSE_FIELD_NUMBER: _ClassVar[int]
    ESCALATE_TO_FIELD_NUMBER: _ClassVar[int]
    REDACT_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    effect: Effect
    reason: str
    gate_id: str
    refuse: bool
    escalate_to: str
    redact: str
    def __init__(self, rule_id: _Optional[str] = ..., effect: _Optional[_Union[Effect, str]] = ..., reason: _Optional[str] = ..., gate_id: _Optional[str] = ..., refuse: _Optional[bool] = ..., escalate_to: _Optional[str] = ..., redact: _Optional[str] = ...) -> None: ...

class EvaluatePolicyResponse(_message.Message):
    __slots__ = ("effect", "gate_ids", "reasons", "controls", "decision_key", "findings", "error")
    EFFECT_FIELD_NUMBER: _ClassVar[int]
    GATE_IDS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    CONTROLS_FIELD_NUMBER: _ClassVar[int]
    DECISION_KEY_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    effect: Effect
    gate_ids: _containers.RepeatedScalarFieldContainer[str]
    reasons: _containers.RepeatedScalarFieldContainer[str]
    controls: _types_pb2.ControlsActive
    decision_key: str
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    error: str
    def __init__(self, effect: _Optional[_Union[Effect, str]] = ..., gate_ids: _Optional[_Iterable[str]] = ..., reasons: _Optional[_Iterable[str]] = ..., controls: _Optional[_Union[_types_pb2.ControlsActive, _Mapping]] = ..., decision_key: _Optional[str] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., error: _Optional[str] = ...) -> None: ...

class GetPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GateDefinition(_message.Message):
    __slots__ = ("gate_id", "description", "principals", "roles", "quorum", "rejections_to_settle", "ttl_seconds", "on_timeout", "escalate_to", "reminder_seconds")
    GATE_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    ROLES_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_TO_SETTLE_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ON_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    ESCALATE_TO_FIELD_NUMBER: _ClassVar[int]
    REMINDER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    gate_id: str
    description: str
    principals: _containers.RepeatedScalarFieldContainer[str]
    roles: _containers.RepeatedScalarFieldContainer[str]
    quorum: int
    rejections_to_settle: int
    ttl_seconds: int
    on_timeout: str
    escalate_to: str
    reminder_seconds: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, gate_id: _Optional[str] = ..., description: _Optional[str] = ..., principals: _Optional[_Iterable[str]] = ..., roles: _Optional[_Iterable[str]] = ..., quorum: _Optional[int] = ..., rejections_to_settle: _Optional[int] = ..., ttl_seconds: _Optional[int] = ..., on_timeout: _Optional[str] = ..., escalate_to: _Optional[str] = ..., reminder_seconds: _Optional[_Iterable[int]] = ...) -> None: ...

class GetPolicyResponse(_message.Message):
    __slots__ = ("bundle", "gates")
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    GATES_FIELD_NUMBER: _ClassVar[int]
    bundle: _types_pb2.PolicyRef
    gates: _containers.RepeatedCompositeFieldContainer[GateDefinition]
    def __init__(self, bundle: _Optional[_Union[_types_pb2.PolicyRef, _Mapping]] = ..., gates: _Optional[_Iterable[_Union[GateDefinition, _Mapping]]] = ...) -> None: ...
