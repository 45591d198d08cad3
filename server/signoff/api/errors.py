"""The one error table: domain errors → google.rpc.Status with one ErrorInfo (AIP-193).
The call layer (calls.py) applies it to every call, over gRPC and HTTP."""

import logging
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from signoff.domain.errors import ErrorReason, SignoffError

log = logging.getLogger("signoff.api")

DOMAIN = "signoff.dev"


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: SignoffError) -> grpc.Status:
    """The status of a domain error: its class's code, its reason, metadata and violations
    (an SDK error with no code, re-raised here, is INTERNAL: nothing was approved)."""
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=error.reason or ErrorReason.INTERNAL, domain=DOMAIN, metadata=error.metadata
            )
        )
    ]
    if error.violations:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    code = error.code.value[0] if error.code is not None else code_pb2.INTERNAL
    return rpc_status.to_status(
        status_pb2.Status(code=code, message=error.message, details=details)
    )


def internal_status() -> grpc.Status:
    # Fail closed: the caller learns nothing was approved, and nothing internal leaks.
    return rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.INTERNAL,
            message="internal error; nothing was approved",
            details=[
                _pack(error_details_pb2.ErrorInfo(reason=ErrorReason.INTERNAL, domain=DOMAIN))
            ],
        )
    )
