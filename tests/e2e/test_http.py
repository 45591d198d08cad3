"""The HTTP listener over loopback with httpx: every service over the Connect protocol (JSON
and binary, a server stream), the same authentication and errors as gRPC, /healthz and
/readyz, and what it refuses (malformed JSON, unknown routes, oversized bodies)."""

import asyncio
import base64
import json
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import httpx
import psycopg
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy.engine import make_url
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from signoff.api import http
from signoff.auth.authenticators import Authenticator
from signoff.store.database import Database
from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_connect as execution_connect
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import policy_service_pb2 as policy_pb
from signoff.v1 import types_pb2 as pb
from tests.e2e.test_fuzz import SEED, Hostile, Method, all_methods, credentials, seed
from tests.support import (
    AGENT_TOKEN,
    ServerProcess,
    Stubs,
    decide,
    envelope,
    eventually,
    log_lines,
    mint,
    refund_action,
    waiting_refund,
)

APPROVER = mint("user_finance_lead_77", "human", "*", ("finance_lead",))
TIMEOUT = 30.0
ENVELOPE_HEADER = struct.Struct(">BI")  # flags, length
END_STREAM = 0x02


def call(
    server: ServerProcess,
    method: str,
    body: Message | dict[str, Any] | bytes,
    token: str | None = AGENT_TOKEN,
    *,
    binary: bool = False,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One unary Connect call: POST /signoff.v1.<Service>/<Method>."""
    sent = {"content-type": "application/proto" if binary else "application/json"}
    if token is not None:
        sent["authorization"] = f"Bearer {token}"
    if isinstance(body, Message):
        content = body.SerializeToString() if binary else json_format.MessageToJson(body)
    elif isinstance(body, dict):
        content = json.dumps(body)
    else:
        content = body
    return httpx.post(
        f"{server.http_url}/signoff.v1.{method}",
        content=content,
        headers={**sent, **(headers or {})},
        timeout=TIMEOUT,
    )


def ok(response: httpx.Response, message: type[Message]) -> Any:
    assert response.status_code == 200, response.text
    return json_format.Parse(response.text, message())


def details(error: dict[str, Any]) -> tuple[error_details_pb2.ErrorInfo, dict[str, str]]:
    """The ErrorInfo and the field violations of a Connect error."""
    info, violations = None, {}
    for detail in error.get("details", []):
        value = base64.b64decode(detail["value"] + "==")
        if detail["type"] == "google.rpc.ErrorInfo":
            assert info is None, error
            info = error_details_pb2.ErrorInfo.FromString(value)
        elif detail["type"] == "google.rpc.BadRequest":
            bad = error_details_pb2.BadRequest.FromString(value)
            violations = {v.field: v.description for v in bad.field_violations}
    assert info is not None, f"every signoff error carries an ErrorInfo: {error}"
    return info, violations


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()
    assert error["code"] == code, error
    return error


def test_every_service_answers_json_as_grpc_does(server: ServerProcess, stubs: Stubs) -> None:
    # Execution: an agent opens an instance and asks; the action waits for a human.
    invoked = ok(
        call(server, "ExecutionService/InvokeAgent", envelope()), execution_pb.InvokeAgentResponse
    )
    instance_id = invoked.instance.instance_id
    asked = ok(
        call(
            server,
            "ExecutionService/RequestDecision",
            {
                "instance_id": instance_id,
                "action": {
                    "tool_call_id": "tc_http",
                    "tool": "adp_payments.issue_refund",
                    "params": {"order_id": "ord_881", "amount": 4200, "currency": "INR"},
                    "risk_class": "RISK_CLASS_DESTRUCTIVE",
                },
            },
        ),
        execution_pb.RequestDecisionResponse,
    )
    assert asked.outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    # What HTTP answers is what gRPC answers.
    got = ok(
        call(server, "ExecutionService/GetInstance", {"instance_id": instance_id}),
        execution_pb.GetInstanceResponse,
    )
    assert got == stubs.execution.GetInstance(
        execution_pb.GetInstanceRequest(instance_id=instance_id)
    )

    # Approval: the human sees it waiting and approves it.
    pending = ok(
        call(
            server,
            "ApprovalService/ListPendingApprovals",
            {"tenant_id": "tenant_acme_prod", "page_size": 1000},
            APPROVER,
        ),
        approval_pb.ListPendingApprovalsResponse,
    )
    assert asked.action_id in [a.action_id for a in pending.actions]
    decided = ok(
        call(
            server,
            "ApprovalService/SubmitDecision",
            {
                "action_id": asked.action_id,
                "verdict": "VERDICT_APPROVE",
                "reason": "order verified",
                "request_id": f"dec_{uuid.uuid4().hex}",
            },
            APPROVER,
        ),
        approval_pb.SubmitDecisionResponse,
    )
    assert decided.action.state == pb.ACTION_STATE_APPROVED
    assert [a.approver for a in decided.record.approvals] == ["user_finance_lead_77"]

    # The agent gets its grant, reports, completes; and lists its instances.
    granted = ok(
        call(server, "ExecutionService/RequestDecision", asked_again(asked, instance_id)),
        execution_pb.RequestDecisionResponse,
    )
    assert granted.outcome == pb.OUTCOME_APPROVED and granted.grant_token
    consumed = ok(
        call(
            server,
            "ExecutionService/ConsumeGrant",
            {"action_id": asked.action_id, "grant_token": granted.grant_token},
        ),
        execution_pb.ConsumeGrantResponse,
    )
    assert consumed.action.state == pb.ACTION_STATE_EXECUTING
    reported = ok(
        call(
            server,
            "ExecutionService/ReportExecution",
            {
                "action_id": asked.action_id,
                "result": "EXECUTION_RESULT_SUCCEEDED",
                "outputs": {"transaction_id": "txn_http"},
            },
        ),
        execution_pb.ReportExecutionResponse,
    )
    assert reported.action.state == pb.ACTION_STATE_EXECUTED
    completed = ok(
        call(server, "ExecutionService/CompleteInstance", {"instance_id": instance_id}),
        execution_pb.CompleteInstanceResponse,
    )
    assert completed.instance.state == pb.INSTANCE_STATE_COMPLETED
    listed = ok(
        call(
            server,
            "ExecutionService/ListInstances",
            {"tenant_id": "tenant_acme_prod", "page_size": 5},
        ),
        execution_pb.ListInstancesResponse,
    )
    assert listed.instances
    other = stubs.execution.InvokeAgent(envelope()).instance.instance_id
    cancelled = ok(
        call(server, "ExecutionService/CancelInstance", {"instance_id": other, "reason": "test"}),
        execution_pb.CancelInstanceResponse,
    )
    assert cancelled.instance.state == pb.INSTANCE_STATE_TERMINATED

    # Audit (the test agent is also an admin): the trail, the record, the chain.
    trail = ok(
        call(server, "AuditService/ListEvents", {"instance_id": instance_id}),
        audit_pb.ListEventsResponse,
    )
    assert trail == stubs.audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance_id))
    record = ok(
        call(server, "AuditService/GetDecisionRecord", {"record_id": decided.record.record_id}),
        audit_pb.GetDecisionRecordResponse,
    )
    assert record.record.record_id == decided.record.record_id
    records = ok(
        call(server, "AuditService/ListDecisionRecords", {"instance_id": instance_id}),
        audit_pb.ListDecisionRecordsResponse,
    )
    assert [r.record_id for r in records.records] == [decided.record.record_id]
    chain = ok(
        call(server, "AuditService/VerifyChain", {"instance_id": instance_id}),
        audit_pb.VerifyChainResponse,
    )
    assert chain.intact and chain.events_checked == len(trail.events)

    # Policy.
    policy = ok(call(server, "PolicyService/GetPolicy", {}), policy_pb.GetPolicyResponse)
    assert policy == stubs.policy.GetPolicy(policy_pb.GetPolicyRequest())
    evaluated = ok(
        call(
            server,
            "PolicyService/EvaluatePolicy",
            {"instance_id": instance_id, "action": json_format.MessageToDict(refund_action())},
        ),
        policy_pb.EvaluatePolicyResponse,
    )
    assert evaluated == stubs.policy.EvaluatePolicy(
        policy_pb.EvaluatePolicyRequest(instance_id=instance_id, action=refund_action())
    )


def asked_again(asked: execution_pb.RequestDecisionResponse, instance_id: str) -> dict[str, Any]:
    """The same proposal again, for the grant of its approval."""
    action = json_format.MessageToDict(asked.action, preserving_proto_field_name=True)
    return {
        "instance_id": instance_id,
        "action": {
            "tool_call_id": action["tool_call_id"],
            "tool": action["tool"],
            "params": action["params"],
            "risk_class": action["risk_class"],
        },
    }


def test_binary_protobuf_is_served_too(server: ServerProcess, stubs: Stubs) -> None:
    instance = stubs.execution.InvokeAgent(envelope()).instance
    request = execution_pb.GetInstanceRequest(instance_id=instance.instance_id)
    response = call(server, "ExecutionService/GetInstance", request, binary=True)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/proto"
    got = execution_pb.GetInstanceResponse.FromString(response.content)
    assert got == stubs.execution.GetInstance(request)


# Bad requests, sent the same over both listeners: (method, request, token).
BAD_REQUESTS: list[tuple[str, Callable[[], Message], str | None]] = [
    (
        "ExecutionService/InvokeAgent",
        lambda: envelope(tenant_id="", request_id="has space"),
        AGENT_TOKEN,
    ),
    (
        "ExecutionService/GetInstance",
        lambda: execution_pb.GetInstanceRequest(instance_id="inst_missing"),
        AGENT_TOKEN,
    ),
    (
        "ApprovalService/SubmitDecision",
        lambda: approval_pb.SubmitDecisionRequest(action_id="act_missing"),
        APPROVER,
    ),
    (
        "ApprovalService/SubmitDecision",
        lambda: approval_pb.SubmitDecisionRequest(
            action_id="act_missing", verdict=pb.VERDICT_APPROVE, request_id="dec_x"
        ),
        APPROVER,
    ),
    ("ApprovalService/ListPendingApprovals", approval_pb.ListPendingApprovalsRequest, AGENT_TOKEN),
    ("ExecutionService/ListInstances", execution_pb.ListInstancesRequest, None),
    ("ExecutionService/ListInstances", execution_pb.ListInstancesRequest, "not-a-known-token"),
]


@pytest.mark.parametrize(("method", "make", "token"), BAD_REQUESTS)
def test_errors_are_the_same_as_over_grpc(
    server: ServerProcess, method: str, make: Callable[[], Message], token: str | None
) -> None:
    request = make()
    service, name = method.split("/")
    stub = getattr(server.stubs(token), service.removesuffix("Service").lower())
    with pytest.raises(grpc.RpcError) as over_grpc:
        getattr(stub, name)(request, timeout=TIMEOUT)
    status = rpc_status.from_call(over_grpc.value)  # type: ignore[arg-type]
    assert status is not None

    response = call(server, method, request, token)
    error = response.json()
    assert error["code"] == over_grpc.value.code().name.lower()
    assert error["message"] == status.message
    # The same details, in the same order: ErrorInfo, then BadRequest if any.
    assert [d["type"] for d in error["details"]] == [
        d.type_url.rpartition("/")[2] for d in status.details
    ]
    for sent, expected in zip(error["details"], status.details, strict=True):
        assert base64.b64decode(sent["value"] + "==") == expected.value
    expected_http = {
        "invalid_argument": 400,
        "not_found": 404,
        "permission_denied": 403,
        "unauthenticated": 401,
    }
    assert response.status_code == expected_http[error["code"]]


def test_unauthenticated_calls_are_refused(server: ServerProcess) -> None:
    missing = refused(
        call(server, "ApprovalService/ListPendingApprovals", {}, None), 401, "unauthenticated"
    )
    assert details(missing)[0].reason == "MISSING_CREDENTIALS"
    twice = httpx.post(
        f"{server.http_url}/signoff.v1.ApprovalService/ListPendingApprovals",
        content="{}",
        headers=[
            ("content-type", "application/json"),
            ("authorization", f"Bearer {APPROVER}"),
            ("authorization", f"Bearer {AGENT_TOKEN}"),
        ],
        timeout=TIMEOUT,
    )
    assert details(refused(twice, 401, "unauthenticated"))[0].reason == "AMBIGUOUS_CREDENTIALS"
    # The rules table: an agent may not list what waits for humans.
    denied = refused(
        call(server, "ApprovalService/ListPendingApprovals", {}, AGENT_TOKEN),
        403,
        "permission_denied",
    )
    assert details(denied)[0].reason == "NOT_ALLOWED"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"tenant_id": ', "request"),
        (b"[1, 2]", "request"),
        (b"\xff\xfe", "request"),
        (b'{"tenant_id": "a", "tenant_id": "b"}', "request"),
        (b'{"tenant_id": 5}', "tenant_id"),
        (b'{"page_size": "many"}', "page_size"),
        (b'{"tenant_idd": "tenant_acme_prod"}', "tenant_idd"),
        (b'{"page_size": Infinity}', "request"),  # not JSON, though Python's parser takes it
        (b'{"page_size": NaN}', "request"),
        (b'{"page_size": 1e999}', "page_size"),  # a float infinity
    ],
)
def test_malformed_json_is_invalid_argument_naming_the_field(
    server: ServerProcess, body: bytes, field: str
) -> None:
    response = call(server, "ApprovalService/ListPendingApprovals", body, APPROVER)
    info, violations = details(refused(response, 400, "invalid_argument"))
    assert info.reason == "INVALID_ARGUMENT"
    assert list(violations) == [field]


def test_a_number_out_of_range_for_an_enum_is_invalid_argument(server: ServerProcess) -> None:
    body = b'{"action_id": "act_x", "verdict": 1e999, "reason": "r", "request_id": "d"}'
    response = call(server, "ApprovalService/SubmitDecision", body, APPROVER)
    info, _ = details(refused(response, 400, "invalid_argument"))
    assert info.reason == "INVALID_ARGUMENT"


def test_a_nested_field_is_named_by_its_path(server: ServerProcess) -> None:
    body = {"instance_id": "inst_x", "action": {"tool": "a.b", "risk_class": "RISK_CLASS_HUGE"}}
    response = call(server, "ExecutionService/RequestDecision", body)
    _, violations = details(refused(response, 400, "invalid_argument"))
    assert list(violations) == ["action.risk_class"]
    assert "RISK_CLASS_HUGE" in violations["action.risk_class"]


def test_undecodable_protobuf_is_invalid_argument(server: ServerProcess) -> None:
    body = b"\xff\xff\xff"
    response = call(server, "ApprovalService/ListPendingApprovals", body, APPROVER, binary=True)
    _, violations = details(refused(response, 400, "invalid_argument"))
    assert list(violations) == ["request"]


def test_credentials_come_before_content(server: ServerProcess) -> None:
    """A caller without credentials learns nothing of the messages: malformed or not, its
    request is UNAUTHENTICATED (as over gRPC)."""
    for binary, body in ((False, b'{"tenant_idd": 5}'), (True, b"\xff\xff\xff")):
        response = call(server, "ApprovalService/ListPendingApprovals", body, None, binary=binary)
        assert details(refused(response, 401, "unauthenticated"))[0].reason == "MISSING_CREDENTIALS"


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/nothing/here",
        "/signoff.v1.ApprovalService/Nothing",
        "/signoff.v1.NoService/ListPendingApprovals",
        "/grpc.health.v1.Health/Check",
    ],
)
def test_unknown_routes_are_404(server: ServerProcess, path: str) -> None:
    response = httpx.post(
        server.http_url + path,
        content="{}",
        headers={"content-type": "application/json", "authorization": f"Bearer {APPROVER}"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 404


def test_grpc_belongs_on_the_grpc_port(server: ServerProcess) -> None:
    response = call(
        server,
        "ApprovalService/ListPendingApprovals",
        b"",
        APPROVER,
        headers={"content-type": "application/grpc"},
    )
    assert refused(response, 415, "unimplemented")["message"].startswith("gRPC is served on")


def _raw(server: ServerProcess, head: str, chunks: Iterator[bytes]) -> bytes:
    """Sends a request by hand and returns what the server answers, while (or although) the
    body is still unsent: the server refuses without reading it."""
    url = urlsplit(server.http_url)
    assert url.hostname is not None and url.port is not None
    with socket.create_connection((url.hostname, url.port), timeout=TIMEOUT) as conn:
        conn.sendall(head.encode())
        for chunk in chunks:
            try:
                conn.sendall(chunk)
            except OSError:  # the server answered and closed the connection
                break
        answer = b""
        while not _complete(answer) and (data := conn.recv(65536)):
            answer += data
    return answer


def _complete(raw: bytes) -> bool:
    head, found, body = raw.partition(b"\r\n\r\n")
    if not found:
        return False
    if b"transfer-encoding: chunked" in head.lower():
        return body.endswith(b"0\r\n\r\n")
    length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
    return length is not None and len(body) >= int(length[1])


def _answer(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = body.split(b"\r\n", 1)[1].rsplit(b"\r\n0\r\n", 1)[0].split(b"\r\n")[0]
    return status, json.loads(body)


def test_an_oversized_body_is_refused_before_it_is_read(server: ServerProcess) -> None:
    path = "/signoff.v1.ApprovalService/ListPendingApprovals"
    common = (
        f"POST {path} HTTP/1.1\r\nhost: signoff\r\ncontent-type: application/json\r\n"
        f"authorization: Bearer {APPROVER}\r\n"
    )
    # A declared length over the limit (1 MiB by default): refused at once, 413.
    declared = 100 * 1024 * 1024
    status, error = _answer(
        _raw(server, common + f"content-length: {declared}\r\n\r\n", iter([b"{" * 65536]))
    )
    assert status == 413 and error["code"] == "resource_exhausted"
    assert details(error)[0].reason == "REQUEST_TOO_LARGE"

    # A chunked body: refused once it passes the limit, with the rest never sent.
    def chunks() -> Iterator[bytes]:
        for _ in range(24):  # 1.5 MiB, and no final chunk
            yield b"10000\r\n" + b" " * 65536 + b"\r\n"

    status, error = _answer(_raw(server, common + "transfer-encoding: chunked\r\n\r\n", chunks()))
    assert status == 429 and error["code"] == "resource_exhausted"
    assert details(error)[0].reason == "REQUEST_TOO_LARGE"


def _frames(response: httpx.Response) -> Iterator[tuple[int, dict[str, Any]]]:
    """The enveloped messages of a Connect stream: (flags, JSON)."""
    buffer = b""
    for data in response.iter_bytes():
        buffer += data
        while len(buffer) >= ENVELOPE_HEADER.size:
            flags, length = ENVELOPE_HEADER.unpack_from(buffer)
            if len(buffer) < ENVELOPE_HEADER.size + length:
                break
            payload = buffer[ENVELOPE_HEADER.size : ENVELOPE_HEADER.size + length]
            buffer = buffer[ENVELOPE_HEADER.size + length :]
            yield flags, json.loads(payload)


def _stream(server: ServerProcess, method: str, body: dict[str, Any], token: str) -> Any:
    payload = json.dumps(body).encode()
    return httpx.stream(
        "POST",
        f"{server.http_url}/signoff.v1.{method}",
        content=ENVELOPE_HEADER.pack(0, len(payload)) + payload,
        headers={"content-type": "application/connect+json", "authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )


def test_watch_instance_streams_the_decision_made_over_grpc(
    server: ServerProcess, stubs: Stubs
) -> None:
    instance_id, asked = waiting_refund(stubs)
    body = {"instance_id": instance_id, "after_revision": str(asked.revision)}
    with _stream(server, "ExecutionService/WatchInstance", body, AGENT_TOKEN) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/connect+json"
        frames = _frames(response)
        flags, first = next(frames)  # a bookmark: nothing new yet, and the stream is live
        assert flags == 0 and "bookmark" in first
        decide(server, asked.action_id, "user_finance_lead_77")
        for flags, message in frames:
            assert flags == 0, message
            event = json_format.ParseDict(message, execution_pb.WatchInstanceResponse())
            if event.event.type == pb.EVENT_TYPE_ACTION_DECIDED:
                assert event.event.action_id == asked.action_id
                assert event.event.outcome == pb.OUTCOME_APPROVED
                break
        else:
            pytest.fail("the stream ended without the decision")


def test_watch_approvals_streams_changes_and_errors_end_the_stream(
    server: ServerProcess, stubs: Stubs
) -> None:
    tenant = f"tenant_http_{uuid.uuid4().hex[:8]}"
    instance = stubs.execution.InvokeAgent(envelope(tenant_id=tenant)).instance
    asked = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(
            instance_id=instance.instance_id, action=refund_action()
        )
    )
    body = {"tenant_id": tenant}
    with _stream(server, "ApprovalService/WatchApprovals", body, APPROVER) as response:
        for flags, message in _frames(response):
            assert flags == 0, message
            if "change" in message:
                change = json_format.ParseDict(message, approval_pb.WatchApprovalsResponse())
                assert change.change.action_id == asked.action_id
                break

    # An error ends the stream with an end-of-stream message: same code and ErrorInfo.
    missing = {"instance_id": "inst_missing"}
    with _stream(server, "ExecutionService/WatchInstance", missing, AGENT_TOKEN) as response:
        assert response.status_code == 200
        [(flags, end)] = list(_frames(response))
    assert flags == END_STREAM
    assert end["error"]["code"] == "not_found"
    assert details(end["error"])[0].reason == "INSTANCE_NOT_FOUND"


def test_health_and_readiness(server: ServerProcess) -> None:
    for path in ("/healthz", "/readyz"):
        response = httpx.get(server.http_url + path, timeout=TIMEOUT)
        assert response.status_code == 200 and response.json()["status"] == "SERVING"


def test_readiness_follows_the_database(
    make_database: Callable[[str], str], tmp_path: Path
) -> None:
    url = make_database("postgresql")
    name = make_url(url).database
    admin = make_url(url).set(drivername="postgresql", database="postgres")
    with (
        ServerProcess(url, tmp_path) as server,
        psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn,
    ):
        assert httpx.get(server.http_url + "/readyz", timeout=TIMEOUT).status_code == 200
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        try:
            for _ in range(3):  # a load balancer probes again and again
                response = httpx.get(server.http_url + "/readyz", timeout=TIMEOUT)
                assert response.status_code == 503
                assert response.json() == {
                    "status": "NOT_SERVING",
                    "problem": "database unreachable",
                }
            # The process is up all the same.
            assert httpx.get(server.http_url + "/healthz", timeout=TIMEOUT).status_code == 200
        finally:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert httpx.get(server.http_url + "/readyz", timeout=TIMEOUT).status_code == 200

    def readiness_lines() -> list[str]:
        return [
            line["message"].partition(":")[0]
            for line in log_lines(server)
            if line["logger"] == "signoff.http"
        ]

    # One line when it stopped answering, one when it answered again: not one per probe.
    assert eventually(lambda: readiness_lines() == ["not ready", "ready again"]), readiness_lines()


def _refused_start(*args: str) -> str:
    """The last log line of a development-mode `signoff serve` that must not start."""
    result = subprocess.run(
        [sys.executable, "-m", "signoff.cli", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    return str(json.loads(result.stderr.splitlines()[-1])["message"])


def test_development_mode_serves_http_on_8080_by_default(
    make_database: Callable[[str], str],
) -> None:
    # Port 8080 is taken (by this test, or by something else): development mode's listener
    # is there by default, so the start fails, naming it.
    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", 8080))
            taken.listen()
        except OSError:
            pass  # in use already, which is as good
        message = _refused_start("--database-url", make_database("sqlite"))
    assert message.startswith("cannot serve HTTP on 127.0.0.1:8080:")


def test_development_mode_serves_http_on_loopback_only(
    make_database: Callable[[str], str],
) -> None:
    database = make_database("sqlite")
    message = _refused_start("--http-host", "0.0.0.0", "--database-url", database)
    assert message.startswith("refusing to serve HTTP on 0.0.0.0 without --auth-config")


def test_http_calls_are_logged_and_carry_the_callers_trace(server: ServerProcess) -> None:
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    request = envelope()
    sent = call(
        server, "ExecutionService/InvokeAgent", request, headers={"traceparent": traceparent}
    )
    instance = ok(sent, execution_pb.InvokeAgentResponse).instance
    missing = f"inst_{uuid.uuid4().hex[:12]}"
    refused(
        call(server, "ExecutionService/GetInstance", {"instance_id": missing}), 404, "not_found"
    )

    # The instance keeps the caller's trace, as over gRPC.
    events = ok(
        call(server, "AuditService/ListEvents", {"instance_id": instance.instance_id}),
        audit_pb.ListEventsResponse,
    ).events
    assert events[0].trace_id == trace_id

    def line(method: str, key: str, value: str) -> dict[str, Any] | None:
        found = [
            line
            for line in log_lines(server)
            if line.get("logger") == "signoff.rpc"
            and line.get("method") == f"signoff.v1.ExecutionService/{method}"
            and line.get(key) == value
        ]
        return found[0] if found else None

    invoked = eventually(lambda: line("InvokeAgent", "request_id", request.request_id))
    assert invoked is not None
    assert invoked["code"] == "OK" and invoked["principal"] == "agt_support"
    assert invoked["trace_id"] == trace_id
    assert invoked["instance_id"] == instance.instance_id
    not_found = eventually(lambda: line("GetInstance", "instance_id", missing))
    assert not_found is not None
    assert not_found["code"] == "NOT_FOUND" and not_found["error_reason"] == "INSTANCE_NOT_FOUND"


def test_the_limit_is_configurable_and_http_stops_with_grpc(
    make_database: Callable[[str], str], tmp_path: Path
) -> None:
    database = make_database("sqlite")
    with ServerProcess(database, tmp_path, "--http-max-request-bytes", "4096") as server:
        padding = {"tenant_id": "tenant_acme_prod", "page_token": "x" * 5000}
        error = refused(
            call(server, "ApprovalService/ListPendingApprovals", padding, APPROVER),
            413,
            "resource_exhausted",
        )
        assert details(error)[0].metadata["limit_bytes"] == "4096"

        # A Connect watch stream is open when the server is told to stop: it ends with
        # `unavailable` (the client resumes elsewhere), and the process exits cleanly.
        instance_id, asked = waiting_refund(server.stubs())
        body = {"instance_id": instance_id, "after_revision": str(asked.revision)}
        with _stream(server, "ExecutionService/WatchInstance", body, AGENT_TOKEN) as response:
            frames = _frames(response)
            assert next(frames)[0] == 0  # live
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            last = list(frames)[-1]
        assert last[0] == END_STREAM and last[1]["error"]["code"] == "unavailable"
        assert server.process.wait(timeout=60) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.http_url + "/healthz", timeout=TIMEOUT)


async def test_the_generated_python_connect_client(server: ServerProcess, stubs: Stubs) -> None:
    """signoff/v1/*_connect.py (scripts/generate) as a client: binary Connect, a server
    stream that sees a decision made over gRPC, and errors with their details."""
    execution = execution_connect.ExecutionServiceClient(server.http_url)
    agent = {"authorization": f"Bearer {AGENT_TOKEN}"}
    instance_id, asked = waiting_refund(stubs)
    got = await execution.get_instance(
        execution_pb.GetInstanceRequest(instance_id=instance_id), headers=agent
    )
    assert got == stubs.execution.GetInstance(
        execution_pb.GetInstanceRequest(instance_id=instance_id)
    )
    watch = execution.watch_instance(
        execution_pb.WatchInstanceRequest(instance_id=instance_id, after_revision=asked.revision),
        headers=agent,
    )
    decided = False
    async for message in watch:
        if message.HasField("bookmark") and not decided:  # live: now decide
            await asyncio.to_thread(decide, server, asked.action_id, "user_finance_lead_77")
            decided = True
        elif message.event.type == pb.EVENT_TYPE_ACTION_DECIDED:
            assert message.event.outcome == pb.OUTCOME_APPROVED
            break
    await watch.aclose()

    with pytest.raises(ConnectError) as missing:
        await execution.get_instance(
            execution_pb.GetInstanceRequest(instance_id="inst_missing"), headers=agent
        )
    assert missing.value.code is Code.NOT_FOUND
    [info] = missing.value.details
    assert info.type_name == "google.rpc.ErrorInfo"
    reason = error_details_pb2.ErrorInfo.FromString(info.message_bytes).reason
    assert reason == "INSTANCE_NOT_FOUND"


async def test_routes_mounted_beside_the_services_get_the_same_body_limit(
    tmp_path: Path,
) -> None:
    """The listener has room for more routes (a console, callbacks); their request bodies
    are limited like the services', chunked or not. In-process, on loopback."""

    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(str(len(await request.body())))

    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    more = [Route("/echo", echo, methods=["POST"])]
    app = http.application([], Authenticator(), http.Readiness(database), 1024, more)
    listener = http.HttpListener(app, "127.0.0.1", 0, grace=1)
    await listener.start()

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 512

    try:
        async with httpx.AsyncClient(base_url=listener.url, timeout=TIMEOUT) as client:
            assert (await client.post("/echo", content=b"x" * 1000)).text == "1000"
            for content in (b"x" * 2000, chunks()):
                refused = await client.post("/echo", content=content)
                assert refused.status_code == 413
                assert details(refused.json())[0].reason == "REQUEST_TOO_LARGE"
    finally:
        await listener.stop()
        await database.close()


# -- hostile requests over HTTP ----------------------------------------------------------------

HTTP_REQUESTS = 600  # seeded and bounded, like tests/e2e/test_fuzz.py over gRPC


def _json_body(rng: random.Random, hostile: Hostile, method: Method, valid: Message) -> bytes:
    """JSON that a hostile caller sends: messages full of odd values, mutated valid JSON,
    wrong shapes and types, unknown fields, deep nesting, NaN."""
    valid_json = json_format.MessageToJson(valid).encode()
    r = rng.random()
    if r < 0.35:
        try:
            return json_format.MessageToJson(hostile.fill(method.request())).encode()
        except (ValueError, json_format.SerializeToJsonError):  # NaN, Infinity in a Struct
            return valid_json.replace(b"{", b'{"amount": NaN, ', 1)
        except RecursionError:  # a Struct nested past what json_format writes
            return b'{"input": {"context": ' * 300 + b"{}" + b"}}" * 300
    if r < 0.6:
        return hostile.mutated(valid_json)
    if r < 0.75:
        names = [f.name for f in method.request.DESCRIPTOR.fields] + ["bogus"]
        values: list[Any] = [None, True, -1, 1e400, "x" * 5000, [], {}, [1, "a"], {"a": {}}]
        return json.dumps({rng.choice(names): rng.choice(values) for _ in range(3)}).encode()
    if r < 0.85:
        depth = rng.choice([50, 200, 5000])
        return rng.choice([b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth])
    return valid_json


def test_hostile_json_gets_precise_answers(tmp_path: Path) -> None:
    """No answer to any body is a 5xx, internal or unknown; nothing logs a traceback; the
    server serves afterwards."""
    rng = random.Random(SEED)
    # gRPC health is not served over HTTP (/healthz is), and streams never end by themselves.
    methods = [m for m in all_methods() if m.path.startswith("/signoff.") and not m.streaming]
    codes: Counter[str] = Counter()
    with (
        ServerProcess(f"sqlite:///{tmp_path / 'fuzz.db'}", tmp_path) as server,
        httpx.Client(base_url=server.http_url, timeout=TIMEOUT) as client,
    ):
        world = seed(server)
        hostile = Hostile(rng, world.known)
        for _ in range(HTTP_REQUESTS):
            method = rng.choice(methods)
            valid = world.valid[method.name]
            headers = dict(credentials(method)) if rng.random() < 0.9 else {}
            if rng.random() < 0.15:
                headers["content-type"] = "application/proto"
                body = hostile.mutated(valid.SerializeToString())
            else:
                headers["content-type"] = "application/json"
                body = _json_body(rng, hostile, method, valid)
            response = client.post(method.path, content=body, headers=headers)
            answer = response.json() if response.status_code != 200 else {"code": "ok"}
            assert response.status_code < 500 or answer["code"] == "unavailable", (
                method.path,
                body[:200],
                response.text[:500],
            )
            assert answer["code"] not in ("internal", "unknown"), (method.path, body[:200])
            codes[answer["code"]] += 1
        assert client.get("/healthz").status_code == 200
        assert server.stubs().execution.InvokeAgent(envelope()).instance.instance_id
    assert "Traceback" not in server.log_path.read_text()
    print(f"\nHTTP fuzz: {sum(codes.values())} requests, seed {SEED}: {dict(codes)}")
