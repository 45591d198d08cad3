"""The one call layer: every call, over gRPC or over HTTP (Connect), goes through here once.

Per call, in this order and in this one place:

- **observation**: a SERVER span when tracing is on (signoff's own services, in the
  caller's trace), the Prometheus counter and latency histogram, and one log line when the
  call ends (DEBUG for health checks and reflection, which load balancers probe every few
  seconds; WARNING for server faults);
- **authentication** and the rules table, before the request is even decoded: bytes that
  are not the request message (corrupt wire format, invalid UTF-8, nesting past protobuf's
  limit, JSON that does not parse) get UNAUTHENTICATED from a caller without credentials,
  INVALID_ARGUMENT from any other, and a rate-limited WARNING line, never a traceback;
- **errors**: a domain error becomes its status through the one error table (errors.py);
  anything unexpected is INTERNAL, logged with its traceback, and never approves.

gRPC reaches it through `Calls.interceptor()`, the server's only interceptor; each
method's handler is wrapped once, on its first call. HTTP reaches it through
`Calls.unary` and `Calls.stream` with a context that looks like gRPC's (api/http.py).
Servicers (servicers.py) only validate, call a use case and translate.
"""

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2

from signoff.api.errors import internal_status, to_status
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
from signoff.telemetry import metrics, tracing
from signoff.telemetry.logs import current_trace_id
from signoff_client.errors import error_info

log = logging.getLogger("signoff.api")
rpc_log = logging.getLogger("signoff.rpc")

Decoder = Callable[[Any], Any]

# Undecodable requests: one WARNING line per this many seconds at most, with a count of
# those not shown, so that callers without credentials cannot flood the log.
UNDECODABLE_LOG_EVERY = 10.0
# The ids a log line takes from the request or the response, where the message has them.
_IDS = ("request_id", "instance_id", "action_id")
_MAX_ID = 128  # an invalid request may carry anything; the line stays short
_STATUS_DETAILS = "grpc-status-details-bin"
# Codes that mean the server failed, not the caller: their lines are warnings.
_SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}
_CODES = {code.value[0]: code for code in grpc.StatusCode}

_CALLER: contextvars.ContextVar[Principal] = contextvars.ContextVar("signoff_caller")


def caller() -> Principal:
    """The authenticated principal of the current call."""
    return _CALLER.get()


@dataclass(frozen=True)
class Method:
    """What the layer needs of one method, worked out once per method."""

    path: str  # /signoff.v1.ExecutionService/GetInstance
    service: str
    name: str
    public: bool  # health and reflection: anyone, and DEBUG lines
    traced: bool  # signoff's own services get a span each (when tracing is on)

    @classmethod
    def of(cls, path: str) -> "Method":
        service, _, name = path.lstrip("/").rpartition("/")
        return cls(
            path, service, name, path.startswith(PUBLIC_PREFIXES), service.startswith("signoff.")
        )


class Calls:
    """The call layer of one server: both listeners share it (and its log throttle)."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator
        self._undecodable = _Throttled(UNDECODABLE_LOG_EVERY)
        self._methods: dict[str, Method] = {}

    def method(self, path: str) -> Method:
        found = self._methods.get(path)
        if found is None:
            found = self._methods[path] = Method.of(path)
        return found

    def interceptor(self) -> grpc.aio.ServerInterceptor:
        """The gRPC server's one interceptor."""
        return _Interceptor(self)

    # -- one call ----------------------------------------------------------------------------

    async def unary(
        self, method: Method, behavior: Any, decode: Decoder | None, data: Any, context: Any
    ) -> Any:
        """One unary call: `data` as received, decoded with `decode` once admitted."""
        call = _Call(method, context)
        try:
            request = await self._admit(call, decode, data)
            call.response = await behavior(request, context)
            return call.response
        except BaseException as error:
            await self._fail(call, error)
            raise
        finally:
            call.done()

    async def stream(
        self, method: Method, behavior: Any, decode: Decoder | None, data: Any, context: Any
    ) -> AsyncGenerator[Any, None]:
        """One server-streaming call, as the responses to send."""
        call = _Call(method, context)
        try:
            request = await self._admit(call, decode, data)
            responses = behavior(request, context)
            if inspect.isawaitable(responses):  # health's Watch writes with context.write
                await responses
                return
            async for item in responses:
                yield item
        except BaseException as error:
            await self._fail(call, error)
            raise
        finally:
            call.done()

    async def _admit(self, call: "_Call", decode: Decoder | None, data: Any) -> Any:
        """Decodes the request, authenticates and authorizes the caller, and only then
        answers a request that did not decode (credentials before content)."""
        undecodable: InvalidArgument | None = None
        if decode is None:
            call.request = data
        else:
            try:
                call.request = decode(data)
            except DecodeError as error:
                undecodable = InvalidArgument([_undecodable(error)])
            except InvalidArgument as error:  # a decoder that names the field (HTTP's JSON)
                undecodable = error
        if not call.method.public:
            _CALLER.set(await self._principal(call))
        if undecodable is not None:
            self._undecodable.note(call.method.path, call.peer, undecodable.violations[0])
            raise undecodable
        return call.request

    async def _principal(self, call: "_Call") -> Principal:
        sent = call.context.invocation_metadata() or ()
        metadata = {key: value for key, value in sent}
        headers = sum(1 for key, _ in sent if key == "authorization")
        if headers > 1:  # never "the last one wins": which one a proxy adds is anyone's guess
            raise Unauthenticated(
                ErrorReason.AMBIGUOUS_CREDENTIALS,
                f"send one authorization header; this call sent {headers}",
            )
        spiffe = (call.context.auth_context().get("peer_spiffe_id") or [b""])[0].decode()
        if self.authenticator.may_block(metadata):
            # Fetching an issuer's keys is blocking network I/O: never on the event loop.
            authenticate = self.authenticator.authenticate
            principal = await asyncio.to_thread(authenticate, metadata, spiffe)
        else:
            principal = self.authenticator.authenticate(metadata, spiffe)
        call.principal = principal
        if not allowed(call.method.path, principal):
            raise PermissionDenied(
                ErrorReason.NOT_ALLOWED,
                f"{principal.kind.value} {principal.id} may not call {call.method.name}",
                metadata={"principal": principal.id},
            )
        return principal

    async def _fail(self, call: "_Call", error: BaseException) -> None:
        """Ends the call with the status of `error` (raises), or lets it through when it
        already has one, or is a cancellation."""
        if isinstance(error, asyncio.CancelledError | GeneratorExit):
            call.code = grpc.StatusCode.CANCELLED  # the client went away or its deadline passed
            return
        if isinstance(error, grpc.aio.AbortError) or error is getattr(
            call.context, "abort_error", None
        ):
            return  # an abort: the status is on the context already (HTTP's raises its own)
        if isinstance(error, SignoffError):
            status = to_status(error)
        elif isinstance(error, Exception):
            log.exception("unexpected error in %s", call.method.name)
            status = internal_status()
        else:
            return
        call.status = status
        await call.context.abort_with_status(status)


class _Call:
    """One call from its start: what its span, metrics and log line need when it ends."""

    __slots__ = (
        "code",
        "context",
        "method",
        "peer",
        "principal",
        "request",
        "response",
        "span",
        "started",
        "status",
        "traceparent",
    )

    def __init__(self, method: Method, context: Any) -> None:
        self.method = method
        self.context = context
        self.started = time.perf_counter()
        # Not the metadata itself: a stream keeps its _Call for its whole life, and the
        # metadata holds the caller's credentials.
        metadata = context.invocation_metadata() or ()
        self.traceparent: Any = next((v for k, v in metadata if k == "traceparent"), None)
        # Read now: once a cancelled call is gone, context.peer() reads freed memory.
        self.peer: str = context.peer()
        self.span = tracing.start_server_span(method.path, metadata) if method.traced else None
        self.principal: Principal | None = None
        self.request: Any = None
        self.response: Any = None
        self.status: grpc.Status | None = None
        self.code: grpc.StatusCode | None = None

    def final_code(self) -> grpc.StatusCode:
        """The status the client gets."""
        if self.code is not None:
            return self.code
        if self.status is not None:
            return self.status.code
        code = self.context.code()  # an abort from further in (or set_code)
        if isinstance(code, grpc.StatusCode):
            return code
        if isinstance(code, int):
            return _CODES.get(code, grpc.StatusCode.UNKNOWN)
        return grpc.StatusCode.OK

    def done(self) -> None:
        seconds = time.perf_counter() - self.started
        code = self.final_code()
        method = self.method
        metrics.RPC_HANDLED.labels(method.service, method.name, code.name).inc()
        metrics.RPC_SECONDS.labels(method.service, method.name).observe(seconds)
        try:
            self._log(code, seconds)
        finally:
            if self.span is not None:
                tracing.end_server_span(self.span, code)

    def _log(self, code: grpc.StatusCode, seconds: float) -> None:
        level = logging.WARNING if code in _SERVER_FAULTS else logging.INFO
        if self.method.public:
            level = logging.DEBUG
        if not rpc_log.isEnabledFor(level):
            return
        fields: dict[str, Any] = {
            "method": self.method.path.lstrip("/"),
            "code": code.name,
            "duration_ms": round(seconds * 1000, 3),
            "principal": self.principal.id if self.principal else "",
            "peer": self.peer,
            "trace_id": current_trace_id() or self._incoming_trace_id(),
        }
        for message in (self.request, self.response):
            for key, value in _ids_in(message).items():
                fields.setdefault(key, value)
        if code not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
            fields["error_reason"] = self._error_reason()
        rpc_log.log(
            level,
            "%s %s %.1fms",
            fields["method"],
            code.name,
            fields["duration_ms"],
            extra={key: value for key, value in fields.items() if value != ""},
        )

    def _incoming_trace_id(self) -> str:
        """The caller's trace id from a W3C `traceparent` header (for when the server does
        not trace, so that no span is current)."""
        sent = self.traceparent
        return tracing.trace_id_of(sent) if isinstance(sent, str) else ""

    def _error_reason(self) -> str:
        """The ErrorInfo reason of signoff's error (errors.py), e.g. INSTANCE_NOT_FOUND.
        Not the message: messages can quote what the caller sent."""
        trailers = (
            self.status.trailing_metadata
            if self.status is not None
            else self.context.trailing_metadata()
        )
        for key, value in trailers or ():
            if key != _STATUS_DETAILS:
                continue
            try:
                info = error_info(status_pb2.Status.FromString(value))
            except DecodeError:
                return ""
            return info.reason if info is not None else ""
        return ""


def _undecodable(error: DecodeError) -> FieldViolation:
    # upb's message names the type and what was wrong, never the bytes sent.
    return FieldViolation("request", f"cannot be decoded: {error}")


def _ids_in(message: Any) -> dict[str, str]:
    """request_id, instance_id and action_id of a message, or of a message it holds
    directly (the `instance` of InvokeAgentResponse, the `action` of SubmitDecisionResponse)."""
    if not isinstance(message, Message):
        return {}
    found: dict[str, str] = {}
    nested = []
    for field, value in message.ListFields():  # only fields that are set
        if field.name in _IDS and isinstance(value, str):
            found[field.name] = value[:_MAX_ID]
        elif isinstance(value, Message):
            nested.append(value)
    for inner in nested:
        for field, value in inner.ListFields():
            if field.name in _IDS and isinstance(value, str):
                found.setdefault(field.name, value[:_MAX_ID])
    return found


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


# -- gRPC ------------------------------------------------------------------------------------


class _Interceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Wraps each method's handler once, on its first call (a watch stream then holds no
    per-call closures). gRPC hands the wrapper each request as bytes: the layer decodes it
    once the caller is admitted."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return handler  # no such method: gRPC answers UNIMPLEMENTED
        path = details.method
        cached = self._wrapped.get(path)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, self.calls.method(path))
        self._wrapped[path] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler, method: Method) -> grpc.RpcMethodHandler:
        calls, decode = self.calls, handler.request_deserializer
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def unary_call(data: bytes, context: grpc.aio.ServicerContext) -> Any:
                return await calls.unary(method, unary, decode, data, context)

            return grpc.unary_unary_rpc_method_handler(
                unary_call, response_serializer=handler.response_serializer
            )
        if handler.unary_stream is not None:
            stream = handler.unary_stream

            async def stream_call(data: bytes, context: grpc.aio.ServicerContext) -> None:
                # Written here rather than yielded: grpc.aio leaves a yielding handler
                # unclosed when the call is cancelled while it writes, and closes it later
                # from another context, where the span could not be detached and the log
                # line would come late. Closed here, the call ends within its own task.
                responses = calls.stream(method, stream, decode, data, context)
                try:
                    async for item in responses:
                        await context.write(item)
                finally:
                    await responses.aclose()

            return grpc.unary_stream_rpc_method_handler(
                stream_call, response_serializer=handler.response_serializer
            )
        if handler.stream_stream is not None and decode is not None:
            # Server reflection (public, and not observed): requests decoded here, so that
            # undecodable ones are INVALID_ARGUMENT rather than UNKNOWN with a traceback.
            bidirectional = handler.stream_stream

            async def bidirectional_call(
                stream: AsyncIterator[bytes], context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                async def requests() -> AsyncIterator[Any]:
                    async for data in stream:
                        try:
                            yield decode(data)
                        except DecodeError as error:
                            problem = _undecodable(error)
                            calls._undecodable.note(method.path, context.peer(), problem)
                            await context.abort_with_status(to_status(InvalidArgument([problem])))

                async for item in bidirectional(requests(), context):
                    yield item

            return grpc.stream_stream_rpc_method_handler(
                bidirectional_call, response_serializer=handler.response_serializer
            )
        return handler  # left alone (signoff has no client-streaming RPC)
