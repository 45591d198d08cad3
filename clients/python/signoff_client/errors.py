"""Typed errors of the signoff SDK.

Every failed RPC becomes a `SignoffError` carrying the gRPC code and the one
`google.rpc.ErrorInfo` signoff attaches (stable UPPER_SNAKE `reason`, `metadata`), plus
`BadRequest` field violations, so callers branch on codes instead of parsing messages.
Outcomes an agent must obey (rejected, terminated, timed out) are subclasses, so a single
`except SignoffError` never lets an agent run an action that was not approved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from signoff.v1.error_reason import ErrorReason

if TYPE_CHECKING:
    from signoff_client.sdk import Decision

__all__ = [
    "ActionRejected",
    "AlreadyDecided",
    "DecisionTimeout",
    "ErrorReason",
    "FieldViolation",
    "InstanceTerminated",
    "SignoffError",
    "error_info",
    "from_rpc_error",
    "reason_of",
]

# SDK-made reasons, for outcomes that are not a server's error (they are not ErrorReasons).
DECISION_TIMEOUT = "DECISION_TIMEOUT"
UNEXPECTED_OUTCOME = "UNEXPECTED_OUTCOME"


def reason_of(text: str) -> ErrorReason | str:
    """The ErrorReason for a reason string from the wire; an unknown one stays a string
    (a newer server may send reasons this client does not know)."""
    try:
        return ErrorReason(text)
    except ValueError:
        return text


@dataclass(frozen=True)
class FieldViolation:
    """One field of a request that breaks its rules (google.rpc.BadRequest)."""

    field: str
    description: str


class SignoffError(Exception):
    """A signoff call failed: the one error type of the SDK and of the server.

    `code` is the gRPC status code (None for outcomes that are not RPC errors),
    `reason` the ErrorInfo reason, an `ErrorReason` (a str: `error.reason ==
    ErrorReason.ACTION_NOT_FOUND` and `== "ACTION_NOT_FOUND"` both hold) or, for a reason
    this client does not know, the string; `metadata` the ErrorInfo metadata,
    `violations` the BadRequest violations (`field_violations` maps field to description).
    The server raises its subclasses (signoff.domain.errors), each with its code.
    """

    code: grpc.StatusCode | None = None

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: ErrorReason | str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: Mapping[str, str] | None = None,
        violations: Iterable[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.reason: ErrorReason | str = reason_of(reason) if reason else ""
        self.metadata = dict(metadata or {})
        self.violations = [
            *violations,
            *(FieldViolation(f, d) for f, d in (field_violations or {}).items()),
        ]

    @property
    def field_violations(self) -> dict[str, str]:
        return {v.field: v.description for v in self.violations}

    def __str__(self) -> str:
        code = f"{self.code.name} " if self.code is not None else ""
        reason = f"[{self.reason}] " if self.reason else ""
        return f"{code}{reason}{self.message}"


class AlreadyDecided(SignoffError):
    """SubmitDecision lost a race (ABORTED, ALREADY_DECIDED): someone else decided first."""

    code = grpc.StatusCode.ABORTED

    def __init__(
        self,
        action_id: str,
        state: str,
        winning_verdict: str,
        winning_approver: str,
        *,
        message: str = "",
    ) -> None:
        super().__init__(
            message
            or f"action {action_id} was already decided: {winning_verdict} by "
            f"{winning_approver} (now {state})",
            reason=ErrorReason.ALREADY_DECIDED,
            metadata={
                "action_id": action_id,
                "state": state,
                "winning_verdict": winning_verdict,
                "winning_approver": winning_approver,
            },
        )

    @property
    def winning_verdict(self) -> str:
        return self.metadata.get("winning_verdict", "")

    @property
    def winning_approver(self) -> str:
        return self.metadata.get("winning_approver", "")


class ActionRejected(SignoffError):
    """The action was rejected (by policy or an approver): the agent must not execute it.

    `reason` is the reason signoff gave, `approver` who decided ("policy" for policy),
    `decision` the full answer.
    """

    def __init__(self, decision: Decision) -> None:
        super().__init__(
            f"action {decision.action_id} was rejected by {decision.approver or 'signoff'}: "
            f"{decision.reason or 'no reason given'}",
            reason=decision.reason,
            metadata={"action_id": decision.action_id, "approver": decision.approver},
        )
        self.decision = decision
        self.approver = decision.approver


class InstanceTerminated(SignoffError):
    """The instance is over (cancelled or ended by policy): nothing on it may execute.

    `decision` is the answer about the action when there was one (it may be None when
    the instance ended before the action was decided).
    """

    def __init__(
        self, instance_id: str, reason: str = "", decision: Decision | None = None
    ) -> None:
        super().__init__(
            f"instance {instance_id} is terminated: {reason or 'no reason given'}",
            reason=reason,
            metadata={
                "instance_id": instance_id,
                "action_id": decision.action_id if decision else "",
            },
        )
        self.instance_id = instance_id
        self.decision = decision


class DecisionTimeout(SignoffError):
    """No decision arrived within the caller's timeout.

    The action still waits server-side. Persist `instance_id`, `action_id` and
    `revision`, and resume later with `wait_for_decision`, rather than retrying locally.
    """

    def __init__(self, instance_id: str, action_id: str, revision: int) -> None:
        super().__init__(
            f"no decision on action {action_id} yet; it still waits (resume after revision "
            f"{revision})",
            code=grpc.StatusCode.DEADLINE_EXCEEDED,
            reason=DECISION_TIMEOUT,
            metadata={
                "instance_id": instance_id,
                "action_id": action_id,
                "revision": str(revision),
            },
        )
        self.instance_id = instance_id
        self.action_id = action_id
        self.revision = revision


def rich_status(error: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status in an error's trailers, if any (sync and aio errors alike)."""
    try:
        return rpc_status.from_call(cast(Any, error))
    except (ValueError, AttributeError, TypeError):
        return None  # inconsistent or absent trailers: a transport error, not signoff's


def error_info(status: status_pb2.Status | None) -> error_details_pb2.ErrorInfo | None:
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None


def from_rpc_error(error: grpc.RpcError) -> SignoffError:
    """Converts a failed RPC (grpc or grpc.aio) into the matching SignoffError."""
    code: grpc.StatusCode = error.code()
    message: str = error.details() or code.name
    status = rich_status(error)
    info = error_info(status)
    violations: list[FieldViolation] = []
    for detail in status.details if status is not None else ():
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            violations += [FieldViolation(v.field, v.description) for v in bad.field_violations]
    reason = reason_of(info.reason) if info is not None else ""
    metadata = dict(info.metadata) if info is not None else {}
    converted: SignoffError
    if reason == ErrorReason.ALREADY_DECIDED:
        converted = AlreadyDecided(
            metadata.get("action_id", ""),
            metadata.get("state", ""),
            metadata.get("winning_verdict", ""),
            metadata.get("winning_approver", ""),
            message=message,
        )
        converted.metadata = metadata
    else:
        converted = SignoffError(message, reason=reason, metadata=metadata, violations=violations)
    converted.code = code
    return converted
