"""W3C trace context on signoff calls, so the agent's trace goes on through the human wait.

The SDK clients send the current OpenTelemetry span's context as `traceparent` metadata with
every call when `opentelemetry-api` is installed (optional: `signoff-client[tracing]`) and a
span is active. signoff stores it with the instance and the action: the DecisionRecord's
`trace_id` and every event's name the agent's trace, and a server that exports traces puts
its spans, including the wait for humans, into that trace.

With the generated stubs, send it yourself::

    stub.RequestDecision(request, metadata=trace_metadata())

or, on a blocking channel, let OpenTelemetry's gRPC client interceptor send it (it also
records a CLIENT span per call; package opentelemetry-instrumentation-grpc)::

    from opentelemetry.instrumentation.grpc import client_interceptor
    from opentelemetry.instrumentation.grpc.grpcext import intercept_channel

    channel = intercept_channel(bearer_channel(target, token), client_interceptor())
"""

from collections.abc import Callable
from functools import cache


@cache
def _injector() -> Callable[[dict[str, str]], None] | None:
    # Imported on first use: OpenTelemetry is optional for the client.
    try:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return None
    return TraceContextTextMapPropagator().inject


def trace_metadata() -> tuple[tuple[str, str], ...]:
    """`traceparent` (and `tracestate`) of the current span as gRPC metadata; empty when
    OpenTelemetry is not installed or no span is active."""
    inject = _injector()
    if inject is None:
        return ()
    carrier: dict[str, str] = {}
    inject(carrier)
    return tuple(carrier.items())
