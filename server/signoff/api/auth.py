"""The authentication interceptor: every signoff RPC runs as a Principal, checked against
the rules table before the servicer sees the request.

It also decodes the request (gRPC hands it over as bytes): bytes that are not the request
message (corrupt wire format, invalid UTF-8 in a string, nesting past protobuf's depth
limit) get UNAUTHENTICATED from a caller without credentials, INVALID_ARGUMENT from any
other, and a WARNING line at most (rate-limited), never a traceback.
"""

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError

from signoff.api.errors import to_status
from signoff.api.wrapping import Decoder, MethodWrapper
from signoff.auth.authenticators import Authenticator
from signoff.auth.rules import PUBLIC_PREFIXES, allowed
from signoff.domain.errors import (
    ErrorReason,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    SignoffError,
    Unauthenticated,
)
from signoff.domain.models import Principal

log = logging.getLogger("signoff.api")

# Undecodable requests: one WARNING line per this many seconds at most, with a count of
# those not shown, so that callers without credentials cannot flood the log.
UNDECODABLE_LOG_EVERY = 10.0

_CALLER: contextvars.ContextVar[Principal] = contextvars.ContextVar("signoff_caller")


def caller() -> Principal:
    """The authenticated principal of the current RPC (set by AuthInterceptor)."""
    return _CALLER.get()


@dataclass
class CallerSlot:
    """Who the RPC authenticated as, and what it asked, for an interceptor outside
    AuthInterceptor: it still knows after the call, when caller() is reset (and for
    PERMISSION_DENIED)."""

    principal: Principal | None = None
    # The request once AuthInterceptor has decoded it (interceptors outside get bytes).
    request: Any = None


_SLOT: contextvars.ContextVar[CallerSlot | None] = contextvars.ContextVar(
    "signoff_caller_slot", default=None
)


def caller_slot() -> CallerSlot:
    """A slot for the current RPC's principal, filled once AuthInterceptor knows it."""
    slot = CallerSlot()
    _SLOT.set(slot)
    return slot


class AuthInterceptor(MethodWrapper):
    decodes = True

    def __init__(self, authenticator: Authenticator) -> None:
        super().__init__()
        self.authenticator = authenticator
        self._undecodable = _Throttled(UNDECODABLE_LOG_EVERY)

    async def _principal(self, context: grpc.aio.ServicerContext, method: str) -> Principal:
        sent = context.invocation_metadata() or ()
        metadata = {key: value for key, value in sent}
        headers = sum(1 for key, _ in sent if key == "authorization")
        if headers > 1:  # never "the last one wins": which one a proxy adds is anyone's guess
            raise Unauthenticated(
                ErrorReason.AMBIGUOUS_CREDENTIALS,
                f"send one authorization header; this call sent {headers}",
            )
        spiffe = (context.auth_context().get("peer_spiffe_id") or [b""])[0].decode()
        if self.authenticator.may_block(metadata):
            # Fetching an issuer's keys is blocking network I/O: never on the event loop.
            authenticate = self.authenticator.authenticate
            principal = await asyncio.to_thread(authenticate, metadata, spiffe)
        else:
            principal = self.authenticator.authenticate(metadata, spiffe)
        if (slot := _SLOT.get()) is not None:
            slot.principal = principal
        if not allowed(method, principal):
            raise PermissionDenied(
                ErrorReason.NOT_ALLOWED,
                f"{principal.kind.value} {principal.id} may not call {method.rsplit('/', 1)[-1]}",
                metadata={"principal": principal.id},
            )
        return principal

    def _decode(self, decode: Decoder | None, data: Any) -> tuple[Any, SignoffError | None]:
        """The request, or None and the error to answer once the caller is authenticated."""
        if decode is None:
            return data, None
        try:
            request = decode(data)
        except DecodeError as error:
            # upb's message names the type and what was wrong, never the bytes sent.
            violation = FieldViolation("request", f"cannot be decoded: {error}")
            return None, InvalidArgument([violation])
        except InvalidArgument as error:  # a decoder that names the field (HTTP's JSON)
            return None, error
        if (slot := _SLOT.get()) is not None:
            slot.request = request
        return request, None

    async def _admit(
        self, context: grpc.aio.ServicerContext, method: str, undecodable: SignoffError | None
    ) -> None:
        """Authenticates the caller, then answers a request that did not decode."""
        try:
            if not method.startswith(PUBLIC_PREFIXES):  # health and reflection: anyone
                _CALLER.set(await self._principal(context, method))
            if undecodable is not None:
                self._undecodable.note(method, context.peer(), undecodable.violations[0])
                raise undecodable
        except SignoffError as error:
            await context.abort_with_status(to_status(error))

    # caller() is not reset after the call: each RPC runs in its own task, whose context
    # goes with it, and a stream the client cancels is closed from another context.
    def unary(self, behavior: Any, method: str, decode: Decoder | None) -> Any:
        async def authenticated(data: Any, context: grpc.aio.ServicerContext) -> Any:
            request, undecodable = self._decode(decode, data)
            await self._admit(context, method, undecodable)
            return await behavior(request, context)

        return authenticated

    def stream(self, behavior: Any, method: str, decode: Decoder | None) -> Any:
        async def authenticated(data: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            request, undecodable = self._decode(decode, data)
            await self._admit(context, method, undecodable)
            responses = behavior(request, context)
            if inspect.isawaitable(responses):  # health's Watch writes with context.write
                await responses
                return
            async for item in responses:
                yield item

        return authenticated

    def bidirectional(self, behavior: Any, method: str, decode: Decoder) -> Any:
        async def admitted(
            stream: AsyncIterator[bytes], context: grpc.aio.ServicerContext
        ) -> AsyncIterator[Any]:
            await self._admit(context, method, None)

            async def requests() -> AsyncIterator[Any]:
                async for data in stream:
                    request, undecodable = self._decode(decode, data)
                    await self._admit(context, method, undecodable)
                    yield request

            async for item in behavior(requests(), context):
                yield item

        return admitted


class _Throttled:
    """The WARNING line of undecodable requests: the first at once, then at most one per
    `every` seconds, counting those it did not show."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.last = -every
        self.unshown = 0

    def note(self, method: str, peer: str, problem: FieldViolation) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            self.unshown += 1
            return
        log.warning(
            "undecodable request to %s from %s: %s (%d more not shown since the last line)",
            method,
            peer,
            problem.description,
            self.unshown,
        )
        self.last, self.unshown = now, 0
