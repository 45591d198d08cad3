"""Domain errors. Each has a stable UPPER_SNAKE reason; api/errors.py maps kinds to gRPC codes."""

from dataclasses import dataclass
from enum import Enum


class ErrorKind(Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class SignoffError(Exception):
    """An error the caller can act on. Anything else is INTERNAL and fails closed."""

    kind: ErrorKind = ErrorKind.FAILED_PRECONDITION

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        metadata: dict[str, str] | None = None,
        violations: list[FieldViolation] | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = metadata or {}
        self.violations = violations or []


class InvalidArgument(SignoffError):
    kind = ErrorKind.INVALID_ARGUMENT

    def __init__(self, violations: list[FieldViolation]) -> None:
        summary = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__("INVALID_ARGUMENT", f"invalid request: {summary}", violations=violations)


class NotFound(SignoffError):
    kind = ErrorKind.NOT_FOUND

    def __init__(self, what: str, ident: str) -> None:
        super().__init__(
            f"{what.upper()}_NOT_FOUND",
            f"{what} {ident!r} not found",
            metadata={f"{what}_id": ident},
        )


class IdempotencyKeyReused(SignoffError):
    kind = ErrorKind.ALREADY_EXISTS

    def __init__(self, key: str, what: str) -> None:
        super().__init__(
            "IDEMPOTENCY_KEY_REUSED",
            f"{key} was already used for a different {what}; use a new key for a new request",
            metadata={"key": key},
        )


class FailedPrecondition(SignoffError):
    kind = ErrorKind.FAILED_PRECONDITION


class IllegalTransition(FailedPrecondition):
    def __init__(self, entity: str, current: object, target: object) -> None:
        super().__init__(
            "ILLEGAL_TRANSITION",
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
            "STATE_TAMPERED",
            f"{what} {ident} does not match its audit chain: {problem}; nothing was done, "
            "run VerifyChain and restore the database",
            metadata=metadata,
        )


class AlreadyDecided(SignoffError):
    kind = ErrorKind.ABORTED

    def __init__(self, action_id: str, state: str, verdict: str, approver: str) -> None:
        super().__init__(
            "ALREADY_DECIDED",
            f"action {action_id} was already decided: {verdict} by {approver} (now {state})",
            metadata={
                "action_id": action_id,
                "state": state,
                "winning_verdict": verdict,
                "winning_approver": approver,
            },
        )


class OutOfRange(SignoffError):
    kind = ErrorKind.OUT_OF_RANGE


class Unavailable(SignoffError):
    """Try again, possibly on another server; nothing was decided."""

    kind = ErrorKind.UNAVAILABLE


class ConcurrentChange(SignoffError):
    """Another transaction changed the action first; the caller may retry."""

    kind = ErrorKind.ABORTED

    def __init__(self, action_id: str) -> None:
        super().__init__(
            "CONCURRENT_CHANGE",
            f"action {action_id} changed while this call ran; read it again and retry",
            metadata={"action_id": action_id},
        )


class PermissionDenied(SignoffError):
    kind = ErrorKind.PERMISSION_DENIED


class Unauthenticated(SignoffError):
    """No credentials, or credentials that do not prove who calls."""

    kind = ErrorKind.UNAUTHENTICATED
