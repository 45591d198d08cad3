"""The one error table: domain errors → google.rpc.Status with one ErrorInfo (AIP-193)."""

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from signoff.domain.errors import ErrorKind, SignoffError

log = logging.getLogger("signoff.api")

DOMAIN = "signoff.dev"

CODES: dict[ErrorKind, int] = {
    ErrorKind.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: code_pb2.NOT_FOUND,
    ErrorKind.ALREADY_EXISTS: code_pb2.ALREADY_EXISTS,
    ErrorKind.FAILED_PRECONDITION: code_pb2.FAILED_PRECONDITION,
    ErrorKind.ABORTED: code_pb2.ABORTED,
    ErrorKind.OUT_OF_RANGE: code_pb2.OUT_OF_RANGE,
    ErrorKind.RESOURCE_EXHAUSTED: code_pb2.RESOURCE_EXHAUSTED,
    ErrorKind.UNAVAILABLE: code_pb2.UNAVAILABLE,
    ErrorKind.UNAUTHENTICATED: code_pb2.UNAUTHENTICATED,
    ErrorKind.PERMISSION_DENIED: code_pb2.PERMISSION_DENIED,
}


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: SignoffError) -> grpc.Status:
    details = [
        _pack(
            error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
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
    return rpc_status.to_status(
        status_pb2.Status(code=CODES[error.kind], message=error.message, details=details)
    )


def internal_status() -> grpc.Status:
    # Fail closed: the caller learns nothing was approved, and nothing internal leaks.
    return rpc_status.to_status(
        status_pb2.Status(
            code=code_pb2.INTERNAL,
            message="internal error; nothing was approved",
            details=[_pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=DOMAIN))],
        )
    )


Request = TypeVar("Request")
Response = TypeVar("Response")
Unary = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Response]]
Streaming = Callable[[Any, Request, grpc.aio.ServicerContext], AsyncIterator[Response]]


def unary(handler: Unary[Request, Response]) -> Unary[Request, Response]:
    @wraps(handler)
    async def wrapper(self: Any, request: Request, context: grpc.aio.ServicerContext) -> Response:
        try:
            return await handler(self, request, context)
        except SignoffError as error:
            await context.abort_with_status(to_status(error))
        except Exception:
            log.exception("unexpected error in %s", handler.__name__)
            await context.abort_with_status(internal_status())
        raise AssertionError("abort_with_status always raises")

    return wrapper


def streaming(handler: Streaming[Request, Response]) -> Streaming[Request, Response]:
    @wraps(handler)
    async def wrapper(
        self: Any, request: Request, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Response]:
        try:
            async for item in handler(self, request, context):
                yield item
        except SignoffError as error:
            await context.abort_with_status(to_status(error))
        except Exception:
            log.exception("unexpected error in %s", handler.__name__)
            await context.abort_with_status(internal_status())

    return wrapper
