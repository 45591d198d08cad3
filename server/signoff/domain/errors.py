"""Domain errors: the SDK's SignoffError (one definition, signoff_client.errors), one
subclass per gRPC code, each raised with an ErrorReason (proto/signoff/v1/errors.proto).

api/errors.py turns them into a google.rpc.Status with one ErrorInfo; the code is the
class's, the reason the ErrorReason's string.
"""

from collections.abc import Iterable

import grpc

from signoff_client.errors import AlreadyDecided, ErrorReason, FieldViolation, SignoffError

__all__ = [
    "AlreadyDecided",
    "ConcurrentChange",
    "ErrorReason",
    "FailedPrecondition",
    "FieldViolation",
    "IdempotencyKeyReused",
    "IllegalTransition",
    "InvalidArgument",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "SignoffError",
    "StateTampered",
    "Unauthenticated",
    "Unavailable",
]


class _Refusal(SignoffError):
    """An error the caller can act on. Anything else is INTERNAL and fails closed."""

    code = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(
        self,
        reason: ErrorReason,
        message: str,
        *,
        metadata: dict[str, str] | None = None,
        violations: Iterable[FieldViolation] = (),
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata, violations=violations)


class InvalidArgument(_Refusal):
    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, violations: list[FieldViolation]) -> None:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(
            ErrorReason.INVALID_ARGUMENT, f"invalid request: {summary}", violations=violations
        )


_NOT_FOUND = {
    "instance": ErrorReason.INSTANCE_NOT_FOUND,
    "action": ErrorReason.ACTION_NOT_FOUND,
    "record": ErrorReason.RECORD_NOT_FOUND,
    "tenant": ErrorReason.TENANT_NOT_FOUND,
}


class NotFound(_Refusal):
    code = grpc.StatusCode.NOT_FOUND

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(
            _NOT_FOUND[what], f"{what} {ident!r} not found", metadata={f"{what}_id": ident}
        )


class IdempotencyKeyReused(_Refusal):
    code = grpc.StatusCode.ALREADY_EXISTS

    def __init__(self, key: str, what: str) -> None:
        super().__init__(
            ErrorReason.IDEMPOTENCY_KEY_REUSED,
            f"{key} was already used for a different {what}; use a new key for a new request",
            metadata={"key": key},
        )


class FailedPrecondition(_Refusal):
    code = grpc.StatusCode.FAILED_PRECONDITION


class IllegalTransition(FailedPrecondition):
    def __init__(self, entity: str, current: object, target: object) -> None:
        super().__init__(
            ErrorReason.ILLEGAL_TRANSITION,
            f"{entity} cannot go from {current} to {target}",
            metadata={"entity": entity, "from": str(current), "to": str(target)},
        )


class StateTampered(FailedPrecondition):
    """A row the service would act on no longer matches what its hash chain sealed: it was
    changed behind signoff's back. Nothing is decided on it (fail closed)."""

    def __init__(self, what: str, ident: str, instance_id: str, problem: str) -> None:
        metadata = {"instance_id": instance_id}
        if what != "instance":
            metadata[f"{what}_id"] = ident
        super().__init__(
            ErrorReason.STATE_TAMPERED,
            f"{what} {ident} does not match its audit chain: {problem}; nothing was done, "
            "run VerifyChain and restore the database",
            metadata=metadata,
        )


class OutOfRange(_Refusal):
    code = grpc.StatusCode.OUT_OF_RANGE


class ResourceExhausted(_Refusal):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(_Refusal):
    """Try again, possibly on another server; nothing was decided."""

    code = grpc.StatusCode.UNAVAILABLE


class ConcurrentChange(_Refusal):
    """Another transaction changed the action first; the caller may retry."""

    code = grpc.StatusCode.ABORTED

    def __init__(self, action_id: str) -> None:
        super().__init__(
            ErrorReason.CONCURRENT_CHANGE,
            f"action {action_id} changed while this call ran; read it again and retry",
            metadata={"action_id": action_id},
        )


class PermissionDenied(_Refusal):
    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(_Refusal):
    """No credentials, or credentials that do not prove who calls."""

    code = grpc.StatusCode.UNAUTHENTICATED
