"""OpenTelemetry tracing: off unless the standard OTEL_* variables ask for it.

Trace context is kept even when tracing is off: the W3C `traceparent` an agent sends with
InvokeAgent and RequestDecision is stored with the instance and the action, and its trace id
goes into every event and DecisionRecord. When tracing is on (OTLP over HTTP/protobuf), the
server also exports spans: one per signoff RPC, policy evaluations, database write
transactions, and the human wait, whose parent is the agent's call even days later.
"""

import logging
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from contextvars import Token
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger("signoff.tracing")

SERVICE_NAME = "signoff"
T = TypeVar("T")
_PROPAGATOR = TraceContextTextMapPropagator()
# The status codes that make a server span an error (OpenTelemetry's gRPC conventions).
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class TracingConfigError(ValueError):
    """The OTEL_* variables ask for something signoff cannot do; the message says what."""


# Set by setup() when tracing is on; None means every function here does (almost) nothing.
_provider: Any = None
_tracer: Tracer | None = None


def _truthy(value: str) -> bool:
    return value.strip().lower() == "true"


def requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the standard variables ask for traces: OTEL_TRACES_EXPORTER=otlp, or an OTLP
    endpoint. OTEL_SDK_DISABLED=true and OTEL_TRACES_EXPORTER=none win."""
    if _truthy(environ.get("OTEL_SDK_DISABLED", "")):
        return False
    exporters = {
        name.strip() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()
    }
    if exporters:
        if "none" in exporters:
            return False
        if exporters != {"otlp"}:
            raise TracingConfigError(
                f"OTEL_TRACES_EXPORTER={environ['OTEL_TRACES_EXPORTER']}: signoff exports "
                "traces with otlp only (or none)"
            )
        return True
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def setup(environ: Mapping[str, str] = os.environ) -> bool:
    """Starts exporting spans if the environment asks for it; returns whether it does.
    Raises TracingConfigError for settings signoff cannot honour."""
    global _provider, _tracer
    if not requested(environ):
        return False
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol != "http/protobuf":
        raise TracingConfigError(
            f"OTLP protocol {protocol!r}: signoff exports traces over http/protobuf only"
        )
    # Imported here: a server without tracing never loads the SDK.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME as SERVICE_NAME_KEY
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES are read here; "signoff" otherwise.
    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME_KEY, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME_KEY: SERVICE_NAME}))
    # The sampler comes from OTEL_TRACES_SAMPLER, the batching from OTEL_BSP_*, and the
    # exporter's endpoint, headers, timeout and compression from OTEL_EXPORTER_OTLP_*.
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _provider, _tracer = provider, provider.get_tracer("signoff")
    log.info(
        "tracing on: exporting spans with OTLP/HTTP as %s", resource.attributes.get("service.name")
    )
    return True


def shutdown() -> None:
    """Exports what is still buffered and stops (blocking; bounded by the exporter's timeout)."""
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider, _tracer = None, None


def enabled() -> bool:
    return _tracer is not None


def start_server_span(method: str, metadata: Any) -> tuple[Span, Token[Context]] | None:
    """The SERVER span of a call to `method` (/package.Service/Method), in the trace of the
    caller's `traceparent`, made the current span; None when tracing is off. OpenTelemetry's
    RPC conventions: rpc.system, rpc.service, rpc.method, and rpc.grpc.status_code at the end
    (end_server_span)."""
    if _tracer is None:
        return None
    sent = {key: value for key, value in metadata or () if isinstance(value, str)}
    service, _, name = method.lstrip("/").rpartition("/")
    started = _tracer.start_span(
        method,
        context=_PROPAGATOR.extract(sent),
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
    )
    return started, otel_context.attach(trace.set_span_in_context(started))


def end_server_span(started: tuple[Span, Token[Context]], code: grpc.StatusCode) -> None:
    """Ends the call's span with its status: an error only for server faults."""
    current, token = started
    current.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in _SERVER_ERRORS:
        current.set_status(Status(StatusCode.ERROR, code.name))
    otel_context.detach(token)
    current.end()


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span]:
    """A child span of the current one while the block runs (a no-op span when off)."""
    if _tracer is None:
        yield trace.INVALID_SPAN
        return
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def traced(
    inner: AbstractAsyncContextManager[T], name: str, **attributes: Any
) -> AbstractAsyncContextManager[T]:
    """`inner` (an async context manager) inside a child span named `name`. Just `inner`
    when off, or outside any trace: background work (timers, webhook deliveries) polls
    the database, and a trace for each poll would be noise."""
    if _tracer is None or not trace.get_current_span().get_span_context().is_valid:
        return inner
    return _traced(inner, name, attributes)


@asynccontextmanager
async def _traced(
    inner: AbstractAsyncContextManager[T], name: str, attributes: dict[str, Any]
) -> AsyncIterator[T]:
    with span(name, **attributes):
        async with inner as value:
            yield value


# -- trace context ---------------------------------------------------------------------------


def traceparent_of_call(metadata: Any) -> str:
    """The W3C traceparent to store for this call: the server span's (a child of the
    caller's) when tracing is on, else the one the caller sent; "" if none or invalid."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        _PROPAGATOR.inject(carrier)
    else:
        sent = {key: value for key, value in metadata or () if isinstance(value, str)}
        _PROPAGATOR.inject(carrier, context=_PROPAGATOR.extract(sent))
    return carrier.get("traceparent", "")


@lru_cache(maxsize=4096)
def _trace_id(traceparent: str) -> str:
    context = trace.get_current_span(_PROPAGATOR.extract({"traceparent": traceparent}))
    span_context = context.get_span_context()
    return trace.format_trace_id(span_context.trace_id) if span_context.is_valid else ""


def trace_id_of(*traceparents: str) -> str:
    """The trace id (32 hex digits) of the first valid traceparent given, else ""."""
    for traceparent in traceparents:
        if traceparent and (found := _trace_id(traceparent)):
            return found
    return ""


# -- the human wait ----------------------------------------------------------------------------


@dataclass(frozen=True)
class HumanWait:
    """An action's wait for humans that just ended: emitted as a span after commit."""

    traceparent: str
    start: datetime
    end: datetime
    attributes: dict[str, Any]


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _nanoseconds(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1) * 1_000  # exact, unlike a float


def end_human_wait(wait: HumanWait) -> None:
    """A span from the request to the decision, in the trace of the call that asked (its
    stored traceparent), linked to the current span (the approver's call, if any)."""
    if _tracer is None:
        return
    current = trace.get_current_span().get_span_context()
    wait_span = _tracer.start_span(
        "signoff await human decision",
        context=_PROPAGATOR.extract({"traceparent": wait.traceparent}),
        kind=SpanKind.INTERNAL,
        attributes=wait.attributes,
        links=[Link(current)] if current.is_valid else None,
        start_time=_nanoseconds(wait.start),
    )
    wait_span.end(end_time=_nanoseconds(wait.end))
