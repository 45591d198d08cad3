"""Tracing through the human wait, against a real OTLP/HTTP receiver on loopback.

An agent calls with a W3C `traceparent`; its trace id becomes the DecisionRecord's trace_id
and every event's. A server whose OTEL_* variables ask for traces exports its spans to the
receiver: the RPCs in the agent's trace, the policy evaluation, the database transactions,
and the wait for humans from the request to the decision. Without them nothing is exported,
and the trace ids are recorded all the same.
"""

import gzip
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.instrumentation.grpc import client_interceptor
from opentelemetry.instrumentation.grpc.grpcext import intercept_channel
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.trace import TracerProvider

from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import execution_service_pb2_grpc as execution_grpc
from signoff.v1 import types_pb2 as pb
from signoff_client import AsyncSignoff, Signoff
from signoff_client.tracing import trace_metadata
from tests.support import AGENT_TOKEN, ServerProcess, Stubs, decide, envelope, refund_action

PATIENCE = 60.0  # seconds to wait for spans before a test fails
WAIT_SPAN = "signoff await human decision"


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    span: trace_pb2.Span

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_id(self) -> str:
        return self.span.parent_span_id.hex()

    @property
    def attributes(self) -> dict[str, Any]:
        return {a.key: _value(a.value) for a in self.span.attributes}


def _value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


class OtlpReceiver:
    """What an OpenTelemetry collector's OTLP/HTTP trace endpoint receives (protobuf)."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                received = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
                receiver.add(self.path, received)
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self._http.server_address[1]}"

    def add(self, path: str, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        assert path == "/v1/traces", path
        with self._lock:
            self.requests += 1
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(ReceivedSpan(resource["service.name"], span))

    def in_trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(
        self, trace_id: str, check: Callable[[list[ReceivedSpan]], bool]
    ) -> list[ReceivedSpan]:
        """The spans of a trace, once `check` holds for them (fails after PATIENCE)."""
        deadline = time.monotonic() + PATIENCE
        while not check(spans := self.in_trace(trace_id)):
            assert time.monotonic() < deadline, f"spans never arrived: {spans}"
            time.sleep(0.05)
        return spans

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()


def new_trace() -> tuple[str, str]:
    """A trace id and a span id, as an agent's tracer would make them."""
    return secrets.token_hex(16), secrets.token_hex(8)


def traceparent(trace_id: str, span_id: str) -> tuple[tuple[str, str]]:
    return (("traceparent", f"00-{trace_id}-{span_id}-01"),)


def named(spans: list[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.span.name == name]


def one(spans: list[ReceivedSpan], name: str) -> ReceivedSpan:
    found = named(spans, name)
    assert len(found) == 1, [s.span.name for s in spans]
    return found[0]


def has(*names: str) -> Callable[[list[ReceivedSpan]], bool]:
    return lambda spans: all(named(spans, name) for name in names)


def ancestors(span: ReceivedSpan, spans: list[ReceivedSpan]) -> list[str]:
    """The names of the span's parents in the trace, nearest first."""
    by_id = {s.span_id: s for s in spans}
    names = []
    while span.parent_id in by_id:
        span = by_id[span.parent_id]
        names.append(span.span.name)
    return names


def ask_for_refund(
    agent: Stubs, trace_id: str
) -> tuple[pb.Instance, execution_pb.RequestDecisionResponse]:
    """InvokeAgent and a RequestDecision that waits, each from its own span of the agent."""
    instance = agent.execution.InvokeAgent(
        envelope(), metadata=traceparent(trace_id, secrets.token_hex(8))
    ).instance
    asked = agent.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(
            instance_id=instance.instance_id, action=refund_action()
        ),
        metadata=traceparent(trace_id, secrets.token_hex(8)),
    )
    assert asked.outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    return instance, asked


def approve(
    server: ServerProcess, action_id: str, metadata: Any = None
) -> approval_pb.SubmitDecisionResponse:
    """Alice approves; `metadata` is her tool's (its traceparent)."""
    return decide(server, action_id, "alice", reason="order checked", metadata=metadata)


def watched(agent: Stubs, instance_id: str, count: int, metadata: Any = None) -> list[pb.Event]:
    """The first `count` events of a WatchInstance stream, which is then cancelled."""
    stream = agent.execution.WatchInstance(
        execution_pb.WatchInstanceRequest(instance_id=instance_id),
        timeout=PATIENCE,
        metadata=metadata,
    )
    found = []
    for item in stream:
        if item.HasField("event"):
            found.append(item.event)
        if len(found) == count:
            break
    stream.cancel()
    return found


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    otlp = OtlpReceiver()
    yield otlp
    otlp.close()


@pytest.fixture(scope="module")
def traced_server(
    database_kind: str,
    make_database: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
    receiver: OtlpReceiver,
) -> Iterator[ServerProcess]:
    """A server exporting traces to the receiver, configured only by standard variables."""
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
    process = ServerProcess(make_database(database_kind), tmp_path_factory.mktemp("logs"), env=env)
    with process:
        yield process


def test_the_wait_and_the_decision_appear_in_the_agent_s_trace(
    traced_server: ServerProcess, receiver: OtlpReceiver, database_kind: str
) -> None:
    agent = traced_server.stubs()
    trace_id, _ = new_trace()
    instance, asked = ask_for_refund(agent, trace_id)
    approver_trace, approver_span = new_trace()
    decided = approve(traced_server, asked.action_id, traceparent(approver_trace, approver_span))

    # What the audit trail says: the record and every event name the agent's trace.
    assert decided.record.trace_id == trace_id
    assert instance.trace_id == trace_id
    listed = agent.audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance.instance_id))
    assert [(e.type, e.trace_id) for e in listed.events] == [
        (pb.EVENT_TYPE_INSTANCE_CREATED, trace_id),
        (pb.EVENT_TYPE_ACTION_REQUESTED, trace_id),
        (pb.EVENT_TYPE_ACTION_DECIDED, trace_id),
    ]
    watch_from = traceparent(trace_id, secrets.token_hex(8))
    assert [e.trace_id for e in watched(agent, instance.instance_id, 3, watch_from)] == [
        trace_id
    ] * 3

    # What the collector got: the wait, a child of the RequestDecision call's server span,
    # and the stream the agent cancelled.
    spans = receiver.wait_for(
        trace_id, has(WAIT_SPAN, "/signoff.v1.ExecutionService/WatchInstance")
    )
    request_span = one(spans, "/signoff.v1.ExecutionService/RequestDecision")
    assert request_span.span.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert request_span.service == "signoff"
    wait = one(spans, WAIT_SPAN)
    assert wait.parent_id == request_span.span_id
    # From the request (the action's create_time) to the decision (the record's time).
    assert wait.span.start_time_unix_nano == asked.action.create_time.ToNanoseconds()
    assert wait.span.end_time_unix_nano == decided.record.create_time.ToNanoseconds()
    request_time = (request_span.span.start_time_unix_nano, request_span.span.end_time_unix_nano)
    assert request_time[0] <= wait.span.start_time_unix_nano <= request_time[1]
    assert wait.attributes == {
        "signoff.tenant.id": "tenant_acme_prod",
        "signoff.instance.id": instance.instance_id,
        "signoff.action.id": asked.action_id,
        "signoff.action.tool": "adp_payments.issue_refund",
        "signoff.action.gate_ids": list(asked.action.gate_ids),
        "signoff.decision.outcome": "APPROVED",
        "signoff.decision.decided_by": "alice",
    }
    # Linked to the approver's call, which is in the approver's own trace.
    approver_spans = receiver.wait_for(
        approver_trace, has("/signoff.v1.ApprovalService/SubmitDecision")
    )
    submit = one(approver_spans, "/signoff.v1.ApprovalService/SubmitDecision")
    assert submit.parent_id == approver_span
    assert [(link.trace_id.hex(), link.span_id.hex()) for link in wait.span.links] == [
        (approver_trace, submit.span_id)
    ]

    # Policy ran inside the request's transaction; both are spans of the agent's trace.
    policy = one(spans, "signoff policy evaluate")
    assert ancestors(policy, spans)[:2] == [
        "signoff db transaction",
        "/signoff.v1.ExecutionService/RequestDecision",
    ]
    assert policy.attributes["signoff.policy.effect"] == "require_approval"
    assert policy.attributes["signoff.policy.bundle_id"] == "TEST_OPEN"
    assert policy.attributes["signoff.policy.gate_ids"] == list(asked.action.gate_ids)
    transactions = named(spans, "signoff db transaction")
    assert {t.attributes["db.system.name"] for t in transactions} == {database_kind}
    assert {ancestors(t, spans)[0] for t in transactions} == {
        "/signoff.v1.ExecutionService/InvokeAgent",
        "/signoff.v1.ExecutionService/RequestDecision",
    }


def test_a_cancelled_wait_ends_its_span_and_streams_and_errors_are_traced(
    traced_server: ServerProcess, receiver: OtlpReceiver
) -> None:
    agent = traced_server.stubs()
    trace_id, _ = new_trace()
    instance, asked = ask_for_refund(agent, trace_id)
    # A server-streaming call in the agent's trace, ended by the instance's last event.
    stream = agent.execution.WatchInstance(
        execution_pb.WatchInstanceRequest(instance_id=instance.instance_id),
        metadata=traceparent(trace_id, secrets.token_hex(8)),
        timeout=PATIENCE,
    )
    agent.execution.CancelInstance(
        execution_pb.CancelInstanceRequest(
            instance_id=instance.instance_id, reason="customer left"
        ),
        metadata=traceparent(trace_id, secrets.token_hex(8)),
    )
    assert [i.event.type for i in stream if i.HasField("event")][
        -1
    ] == pb.EVENT_TYPE_INSTANCE_TERMINATED
    # An error: the call's span carries its status code.
    with pytest.raises(grpc.RpcError) as missing:
        agent.execution.GetInstance(
            execution_pb.GetInstanceRequest(instance_id="ins_nothing_here"),
            metadata=traceparent(trace_id, secrets.token_hex(8)),
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    spans = receiver.wait_for(
        trace_id,
        has(
            WAIT_SPAN,
            "/signoff.v1.ExecutionService/WatchInstance",
            "/signoff.v1.ExecutionService/CancelInstance",
            "/signoff.v1.ExecutionService/GetInstance",
        ),
    )
    wait = one(spans, WAIT_SPAN)
    assert wait.attributes["signoff.action.id"] == asked.action_id
    assert wait.attributes["signoff.decision.outcome"] == "CANCELLED"
    assert wait.attributes["signoff.decision.decided_by"] == "agt_support"
    assert wait.parent_id == one(spans, "/signoff.v1.ExecutionService/RequestDecision").span_id
    cancel = one(spans, "/signoff.v1.ExecutionService/CancelInstance")
    assert [link.span_id.hex() for link in wait.span.links] == [cancel.span_id]
    watch = one(spans, "/signoff.v1.ExecutionService/WatchInstance")
    assert watch.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    failed = one(spans, "/signoff.v1.ExecutionService/GetInstance")
    assert failed.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    # Only server faults are span errors (OpenTelemetry's gRPC conventions).
    assert failed.span.status.code != trace_pb2.Status.STATUS_CODE_ERROR
    # The stream the client cancelled (the first test's) closed its span within its call.
    assert "Failed to detach context" not in traced_server.log_path.read_text()


def test_http_calls_are_traced_as_grpc_calls_are(
    traced_server: ServerProcess, receiver: OtlpReceiver
) -> None:
    """The one call layer opens the same SERVER span for a Connect call over HTTP, in the
    caller's trace, with its status code."""
    trace_id, caller_span = new_trace()
    missing = f"ins_{secrets.token_hex(6)}"
    answer = httpx.post(
        f"{traced_server.http_url}/signoff.v1.ExecutionService/GetInstance",
        json={"instance_id": missing},
        headers={
            "authorization": f"Bearer {AGENT_TOKEN}",
            "traceparent": f"00-{trace_id}-{caller_span}-01",
        },
        timeout=10,
    )
    assert answer.status_code == 404
    spans = receiver.wait_for(trace_id, has("/signoff.v1.ExecutionService/GetInstance"))
    call = one(spans, "/signoff.v1.ExecutionService/GetInstance")
    assert call.span.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert call.parent_id == caller_span
    assert call.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert call.attributes["rpc.service"] == "signoff.v1.ExecutionService"
    assert call.attributes["rpc.method"] == "GetInstance"


async def test_the_sdk_sends_the_current_span_s_trace(
    traced_server: ServerProcess, receiver: OtlpReceiver
) -> None:
    tracer = TracerProvider().get_tracer("agent")  # the agent's own tracer, exporting nothing
    with tracer.start_as_current_span("agent step") as step:
        trace_id = format(step.get_span_context().trace_id, "032x")
        step_id = format(step.get_span_context().span_id, "016x")
        with Signoff.connect(traced_server.target) as signoff:
            instance = signoff.invoke_agent(envelope())
        async with AsyncSignoff.connect(traced_server.target) as signoff_aio:
            decision = await signoff_aio.request_decision(
                instance.instance_id,
                tool_call_id="tc_121",
                tool="adp_payments.issue_refund",
                params={"order_id": "ord_881", "amount": 4200, "currency": "INR"},
                risk_class="DESTRUCTIVE",
                wait=False,
            )
    assert instance.trace_id == trace_id
    spans = receiver.wait_for(
        trace_id,
        has(
            "/signoff.v1.ExecutionService/InvokeAgent",
            "/signoff.v1.ExecutionService/RequestDecision",
        ),
    )
    for name in ("InvokeAgent", "RequestDecision"):
        assert one(spans, f"/signoff.v1.ExecutionService/{name}").parent_id == step_id
    events = (
        traced_server.stubs()
        .audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance.instance_id))
        .events
    )
    assert [e.trace_id for e in events] == [trace_id, trace_id]
    assert decision.action_id

    # Outside any span the SDK sends no trace context: the server's span starts a trace.
    with Signoff.connect(traced_server.target) as signoff:
        untraced = signoff.invoke_agent(envelope())
    assert untraced.trace_id not in ("", trace_id)
    root = receiver.wait_for(untraced.trace_id, has("/signoff.v1.ExecutionService/InvokeAgent"))
    assert one(root, "/signoff.v1.ExecutionService/InvokeAgent").parent_id == ""


@pytest.mark.parametrize(
    "otel_env",
    [
        {},
        {"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "{endpoint}"},
        {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "{endpoint}"},
    ],
    ids=["no variables", "sdk disabled", "exporter none"],
)
def test_without_tracing_trace_ids_are_recorded_and_nothing_is_exported(
    make_database: Callable[[str], str], log_dir: Path, otel_env: dict[str, str]
) -> None:
    receiver = OtlpReceiver()
    env = {key: value.format(endpoint=receiver.endpoint) for key, value in otel_env.items()}
    server = ServerProcess(make_database("sqlite"), log_dir, env=env)
    try:
        with server:
            agent = server.stubs()
            trace_id, _ = new_trace()
            instance, asked = ask_for_refund(agent, trace_id)
            decided = approve(server, asked.action_id)
            events = agent.audit.ListEvents(
                audit_pb.ListEventsRequest(instance_id=instance.instance_id)
            ).events
            # A traceparent that is not one is ignored.
            garbled = agent.execution.InvokeAgent(
                envelope(), metadata=(("traceparent", f"00-{trace_id}-not-a-span"),)
            ).instance
        # The server stopped, and a stopping server flushes what it would export.
        assert decided.record.trace_id == trace_id
        assert [e.trace_id for e in events] == [trace_id] * 3
        assert garbled.trace_id == ""
        assert receiver.requests == 0 and receiver.spans == []
    finally:
        receiver.close()


def test_the_sdk_works_without_opentelemetry(traced_server: ServerProcess) -> None:
    """opentelemetry-api is optional for the client: without it, calls carry no context."""
    script = f"""
import sys
sys.modules["opentelemetry"] = None  # as if it were not installed
from signoff_client import Signoff
from signoff_client.tracing import trace_metadata
from tests.support import envelope
assert trace_metadata() == ()
with Signoff.connect({traced_server.target!r}) as signoff:
    print(signoff.invoke_agent(envelope()).instance_id)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=PATIENCE
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ins_")


def test_raw_stubs_send_the_trace_with_helpers(traced_server: ServerProcess) -> None:
    """The two ways docs/integration-python.md gives for the generated stubs."""
    provider = TracerProvider()
    channel = traced_server.channel()
    traced_channel = intercept_channel(channel, client_interceptor(tracer_provider=provider))
    with provider.get_tracer("agent").start_as_current_span("agent step") as step:
        trace_id = format(step.get_span_context().trace_id, "032x")
        by_hand = execution_grpc.ExecutionServiceStub(channel).InvokeAgent(
            envelope(), metadata=trace_metadata()
        )
        intercepted = execution_grpc.ExecutionServiceStub(traced_channel).InvokeAgent(envelope())
    assert by_hand.instance.trace_id == intercepted.instance.trace_id == trace_id


@pytest.mark.parametrize(
    "otel_env,named_in_error",
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER=zipkin"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            "OTLP protocol 'grpc'",
        ),
    ],
    ids=["exporter", "protocol"],
)
def test_tracing_settings_signoff_cannot_honour_stop_the_server(
    make_database: Callable[[str], str], otel_env: dict[str, str], named_in_error: str
) -> None:
    refused = subprocess.run(
        [sys.executable, "-m", "signoff.cli", "serve", "--port", "0",
         "--database-url", make_database("sqlite")],
        env={**os.environ, **otel_env}, capture_output=True, text=True, timeout=PATIENCE,
    )  # fmt: skip
    assert refused.returncode == 2
    assert named_in_error in refused.stderr
    assert "signoff listening" not in refused.stdout
