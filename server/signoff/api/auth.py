"""The authentication interceptor: every signoff RPC runs as a Principal, checked against
the rules table before the servicer sees the request."""

import asyncio
import contextvars
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from signoff.api.errors import to_status
from signoff.api.wrapping import MethodWrapper
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


async def authorize(
    authenticator: Authenticator, method: str, metadata: Mapping[str, str], spiffe: str = ""
) -> Principal:
    """Who calls `method` ("/signoff.v1.Service/Method"), checked against the rules table;
    Unauthenticated or PermissionDenied otherwise. Every listener (gRPC, HTTP) asks here."""
    if authenticator.may_block(metadata):
        # Fetching an issuer's keys is blocking network I/O: never on the event loop.
        principal = await asyncio.to_thread(authenticator.authenticate, metadata, spiffe)
    else:
        principal = authenticator.authenticate(metadata, spiffe)
    if (slot := _SLOT.get()) is not None:
        slot.principal = principal
    if not allowed(method, principal):
        raise PermissionDenied(
            "NOT_ALLOWED",
            f"{principal.kind.value} {principal.id} may not call {method.rsplit('/', 1)[-1]}",
            metadata={"principal": principal.id},
        )
    return principal


def act_as(principal: Principal) -> None:
    """Makes `principal` the caller() of the rest of the current RPC's task."""
    _CALLER.set(principal)


class AuthInterceptor(MethodWrapper):
    def __init__(self, authenticator: Authenticator) -> None:
        super().__init__()
        self.authenticator = authenticator

    async def _principal(self, context: grpc.aio.ServicerContext, method: str) -> Principal:
        metadata = {key: value for key, value in (context.invocation_metadata() or ())}
        spiffe = (context.auth_context().get("peer_spiffe_id") or [b""])[0].decode()
        return await authorize(self.authenticator, method, metadata, spiffe)

    def skips(self, method: str) -> bool:
        return method.startswith(PUBLIC_PREFIXES)

    # caller() is not reset after the call: each RPC runs in its own task, whose context
    # goes with it, and a stream the client cancels is closed from another context.
    def unary(self, behavior: Any, method: str) -> Any:
        async def authenticated(request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                principal = await self._principal(context, method)
            except SignoffError as error:
                await context.abort_with_status(to_status(error))
            act_as(principal)
            return await behavior(request, context)

        return authenticated

    def stream(self, behavior: Any, method: str) -> Any:
        async def authenticated(
            request: Any, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            try:
                principal = await self._principal(context, method)
            except SignoffError as error:
                await context.abort_with_status(to_status(error))
            act_as(principal)
            async for item in behavior(request, context):
                yield item

        return authenticated
