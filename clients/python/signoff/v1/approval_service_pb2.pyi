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

class ApprovalChangeKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    APPROVAL_CHANGE_KIND_UNSPECIFIED: _ClassVar[ApprovalChangeKind]
    APPROVAL_CHANGE_KIND_REQUESTED: _ClassVar[ApprovalChangeKind]
    APPROVAL_CHANGE_KIND_VOTED: _ClassVar[ApprovalChangeKind]
    APPROVAL_CHANGE_KIND_DECIDED: _ClassVar[ApprovalChangeKind]
    APPROVAL_CHANGE_KIND_EXPIRED: _ClassVar[ApprovalChangeKind]
    APPROVAL_CHANGE_KIND_ESCALATED: _ClassVar[ApprovalChangeKind]
    APPROVAL_CHANGE_KIND_CANCELLED: _ClassVar[ApprovalChangeKind]
APPROVAL_CHANGE_KIND_UNSPECIFIED: ApprovalChangeKind
APPROVAL_CHANGE_KIND_REQUESTED: ApprovalChangeKind
APPROVAL_CHANGE_KIND_VOTED: ApprovalChangeKind
APPROVAL_CHANGE_KIND_DECIDED: ApprovalChangeKind
APPROVAL_CHANGE_KIND_EXPIRED: ApprovalChangeKind
APPROVAL_CHANGE_KIND_ESCALATED: ApprovalChangeKind
APPROVAL_CHANGE_KIND_CANCELLED: ApprovalChangeKind

class WatchApprovalsRequest(_message.Message):
    __slots__ = ("tenant_id", "after_cursor")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_CURSOR_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    after_cursor: int
    def __init__(self, tenant_id: _Optional[str] = ..., after_cursor: _Optional[int] = ...) -> None: ...

class ApprovalChange(_message.Message):
    __slots__ = ("cursor", "tenant_id", "kind", "action_id", "instance_id", "revision", "action_state", "tool", "gate_id", "actor", "time")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ACTION_STATE_FIELD_NUMBER: _ClassVar[int]
    TOOL_FIELD_NUMBER: _ClassVar[int]
    GATE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    tenant_id: str
    kind: ApprovalChangeKind
    action_id: str
    instance_id: str
    revision: int
    action_state: _types_pb2.ActionState
    tool: str
    gate_id: str
    actor: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, cursor: _Optional[int] = ..., tenant_id: _Optional[str] = ..., kind: _Optional[_Union[ApprovalChangeKind, str]] = ..., action_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., revision: _Optional[int] = ..., action_state: _Optional[_Union[_types_pb2.ActionState, str]] = ..., tool: _Optional[str] = ..., gate_id: _Optional[str] = ..., actor: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class WatchApprovalsResponse(_message.Message):
    __slots__ = ("change", "bookmark_cursor")
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    BOOKMARK_CURSOR_FIELD_NUMBER: _ClassVar[int]
    change: ApprovalChange
    bookmark_cursor: int
    def __init__(self, change: _Optional[_Union[ApprovalChange, _Mapping]] = ..., bookmark_cursor: _Optional[int] = ...) -> None: ...

class ListPendingApprovalsRequest(_message.Message):
    __slots__ = ("tenant_id", "page_size", "page_token")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    page_size: int
    page_token: str
    def __init__(self, tenant_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListPendingApprovalsResponse(_message.Message):
    __slots__ = ("actions", "next_page_token")
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[_types_pb2.Action]
    next_page_token: str
    def __init__(self, actions: _Optional[_Iterable[_Union[_types_pb2.Action, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class SubmitDecisionRequest(_message.Message):
    __slots__ = ("action_id", "verdict", "reason", "request_id", "edited_params", "evidence_snapshot_hash")
    ACTION_ID_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    EDITED_PARAMS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_SNAPSHOT_HASH_FIELD_NUMBER: _ClassVar[int]
    action_id: str
    verdict: _types_pb2.Verdict
    reason: str
    request_id: str
    edited_params: _struct_pb2.Struct
    evidence_snapshot_hash: str
    def __init__(self, action_id: _Optional[str] = ..., verdict: _Optional[_Union[_types_pb2.Verdict, str]] = ..., reason: _Optional[str] = ..., request_id: _Optional[str] = ..., edited_params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., evidence_snapshot_hash: _Optional[str] = ...) -> None: ...

class SubmitDecisionResponse(_message.Message):
    __slots__ = ("action", "record")
    ACTION_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    action: _types_pb2.Action
    record: _types_pb2.DecisionRecord
    def __init__(self, action: _Optional[_Union[_types_pb2.Action, _Mapping]] = ..., record: _Optional[_Union[_types_pb2.DecisionRecord, _Mapping]] = ...) -> None: ...
