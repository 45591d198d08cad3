"""The authentication interceptor: every signoff RPC runs as a Principal, checked against
the rules table before the servicer sees the request."""

import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from signoff.api.errors import to_status
from signoff.auth.authenticators import Authenticator
from signoff.auth.rules import PUBLIC_PREFIXES, allowed
from signoff.domain.errors import PermissionDenied, SignoffError
from signoff.domain.models import Principal

_CALLER: contextvars.ContextVar[Principal] = contextvars.ContextVar("signoff_caller")


def caller() -> Principal:
    """The authenticated principal of the current RPC (set by AuthInterceptor)."""
    return _CALLER.get()


@dataclass
class CallerSlot:
    """Who the RPC authenticated as, for an interceptor outside AuthInterceptor: it still
    knows after the call, when caller() is reset (and for PERMISSION_DENIED)."""

    principal: Principal | None = None


_SLOT: contextvars.ContextVar[CallerSlot | None] = contextvars.ContextVar(
    "signoff_caller_slot", default=None
)


def caller_slot() -> CallerSlot:
    """A slot for the current RPC's principal, filled once AuthInterceptor knows it."""
    slot = CallerSlot()
    _SLOT.set(slot)
    return slot


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator
        # Wrapped once per method, not per call: every open watch stream holds its handler.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def _principal(self, context: grpc.aio.ServicerContext, method: str) -> Principal:
        metadata = {key: value for key, value in (context.invocation_metadata() or ())}
        spiffe = context.auth_context().get("peer_spiffe_id") or [b""]
        principal = self.authenticator.authenticate(metadata, spiffe[0].decode())
        if (slot := _SLOT.get()) is not None:
            slot.principal = principal
        if not allowed(method, principal):
            raise PermissionDenied(
                "NOT_ALLOWED",
                f"{principal.kind.value} {principal.id} may not call {method.rsplit('/', 1)[-1]}",
                metadata={"principal": principal.id},
            )
        return principal

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        else:
            raise AssertionError(f"signoff has no client-streaming RPC: {method}")
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _unary(self, behavior: Any, method: str) -> Any:
        async def authenticated(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                principal = self._principal(context, method)
            except SignoffError as error:
                await context.abort_with_status(to_status(error))
            token = _CALLER.set(principal)
            try:
                return await behavior(request, context)
            finally:
                _CALLER.reset(token)

        return authenticated

    def _stream(self, behavior: Any, method: str) -> Any:
        async def authenticated(
            request: Any, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            try:
                principal = self._principal(context, method)
            except SignoffError as error:
                await context.abort_with_status(to_status(error))
            token = _CALLER.set(principal)
            try:
                async for item in behavior(request, context):
                    yield item
            finally:
                _CALLER.reset(token)

        return authenticated
