"""Every RPC, seen from outside authentication: counted and timed for Prometheus, and one log
line each. Outside, so that calls refused by AuthInterceptor are counted and logged too.

Health checks and reflection are counted like any RPC, but their log lines are DEBUG:
load balancers probe every few seconds and would drown everything else.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from google.rpc import status_pb2

from signoff.api.auth import CallerSlot, caller_slot
from signoff.api.wrapping import Decoder, MethodWrapper
from signoff.auth.rules import PUBLIC_PREFIXES
from signoff.telemetry import metrics, tracing
from signoff.telemetry.logs import current_trace_id
from signoff_client.errors import error_info

log = logging.getLogger("signoff.rpc")

# The ids a log line takes from the request or the response, where the message has them.
_IDS = ("request_id", "instance_id", "action_id")
_MAX_ID = 128  # an invalid request may carry anything; the line stays short
_STATUS_DETAILS = "grpc-status-details-bin"
# Codes that mean the server failed, not the caller: their lines are warnings.
_SERVER_FAULTS = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.DATA_LOSS}


class ObserveInterceptor(MethodWrapper):
    """Put it before AuthInterceptor (and after a tracing interceptor, whose span then is
    the current one and gives the log line its trace id)."""

    def unary(self, behavior: Any, method: str, decode: Decoder | None) -> Any:
        return _unary(behavior, method)

    def stream(self, behavior: Any, method: str, decode: Decoder | None) -> Any:
        return _stream(behavior, method)


def _unary(behavior: Any, method: str) -> Any:
    async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = _Call(method, request, context)
        response, error = None, None
        try:
            response = await behavior(request, context)
            return response
        except BaseException as raised:
            error = raised
            raise
        finally:
            call.done(response, error)

    return observed


def _stream(behavior: Any, method: str) -> Any:
    async def observed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = _Call(method, request, context)
        error = None
        try:
            async for item in behavior(request, context):
                yield item
        except BaseException as raised:
            error = raised
            raise
        finally:
            call.done(None, error)

    return observed


class _Call:
    """One RPC from its start: what the metrics and the log line need when it ends."""

    def __init__(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.method = method
        self.request = request
        self.context = context
        self.started = time.perf_counter()
        # AuthInterceptor, inside this one, fills it in: caller() is gone when the call ends.
        self.caller: CallerSlot = caller_slot()
        # Read now: once a cancelled call is gone, context.peer() reads freed memory.
        self.peer = context.peer()
        self.incoming_trace_id = _incoming_trace_id(context)

    def done(self, response: Any, error: BaseException | None) -> None:
        seconds = time.perf_counter() - self.started
        code = _final_code(self.context, error)
        service, _, name = self.method.lstrip("/").rpartition("/")
        metrics.RPC_HANDLED.labels(service, name, code.name).inc()
        metrics.RPC_SECONDS.labels(service, name).observe(seconds)

        level = logging.WARNING if code in _SERVER_FAULTS else logging.INFO
        if self.method.startswith(PUBLIC_PREFIXES):
            level = logging.DEBUG
        if not log.isEnabledFor(level):
            return
        fields: dict[str, Any] = {
            "method": self.method.lstrip("/"),
            "code": code.name,
            "duration_ms": round(seconds * 1000, 3),
            "principal": self.caller.principal.id if self.caller.principal else "",
            "peer": self.peer,
            "trace_id": current_trace_id() or self.incoming_trace_id,
        }
        # The decoded request: outside AuthInterceptor, `self.request` is its bytes.
        request = self.caller.request if self.caller.request is not None else self.request
        for message in (request, response):
            for key, value in _ids_in(message).items():
                fields.setdefault(key, value)
        if code not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
            fields["error_reason"] = self._error_reason()
        log.log(
            level,
            "%s %s %.1fms",
            fields["method"],
            code.name,
            fields["duration_ms"],
            extra={key: value for key, value in fields.items() if value != ""},
        )

    def _error_reason(self) -> str:
        """The ErrorInfo reason of signoff's error (errors.py), e.g. INSTANCE_NOT_FOUND.
        Not the message: messages can quote what the caller sent."""
        for key, value in self.context.trailing_metadata() or ():
            if key != _STATUS_DETAILS:
                continue
            try:
                info = error_info(status_pb2.Status.FromString(value))
            except DecodeError:
                return ""
            return info.reason if info is not None else ""
        return ""


def _incoming_trace_id(context: grpc.aio.ServicerContext) -> str:
    """The caller's trace id from a W3C `traceparent` header (for when the server does not
    trace, so that no span is current)."""
    sent = dict(context.invocation_metadata() or ()).get("traceparent")
    return tracing.trace_id_of(sent) if isinstance(sent, str) else ""


def _final_code(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    """The status the client gets. abort() and abort_with_status() (errors.py, auth.py) set
    it on the context before they raise AbortError; set_code() sets it without raising."""
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return grpc.StatusCode.CANCELLED  # the client went away or its deadline passed
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):
        return next(c for c in grpc.StatusCode if c.value[0] == code)
    # An exception nothing turned into a status: gRPC answers UNKNOWN.
    return grpc.StatusCode.UNKNOWN if error is not None else grpc.StatusCode.OK


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
