"""Bad input gets a precise INVALID_ARGUMENT (or UNAUTHENTICATED), never INTERNAL or UNKNOWN:
numbers JSON cannot hold, bytes that are not the request message, two authorization
headers, a malformed evidence hash; and request ids of votes are scoped per tenant."""

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from google.protobuf import struct_pb2

from signoff import cli
from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import policy_service_pb2 as policy_pb
from signoff.v1 import types_pb2 as pb
from tests.support import (
    AGENT_TOKEN,
    ServerProcess,
    Stubs,
    decide,
    envelope,
    error_info,
    field_violations,
    log_lines,
    refund_action,
    rpc_error,
    waiting_refund,
)

NOT_FINITE = [float("nan"), float("inf"), float("-inf")]


def waiting_action(stubs: Stubs, tenant: str = "tenant_acme_prod") -> tuple[str, str, str]:
    """(instance_id, action_id, action_sha256) of a refund that waits for a human."""
    instance_id, answer = waiting_refund(stubs, tenant_id=tenant)
    assert answer.outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    return instance_id, answer.action_id, answer.action_sha256


def nested(value: float) -> struct_pb2.Struct:
    """{"refund": {"lines": [1, value]}}"""
    message = struct_pb2.Struct()
    message.update({"refund": {"lines": [1, value]}})
    return message


@pytest.mark.parametrize("value", NOT_FINITE, ids=["nan", "inf", "-inf"])
def test_non_finite_numbers_in_every_struct_are_invalid_arguments(
    stubs: Stubs, value: float
) -> None:
    path = "refund.lines[1]"
    # RequestDecision params
    instance_id, action_id, _ = waiting_action(stubs)
    action = refund_action("tc_nan")
    action.params.update({"amount": value})
    error = rpc_error(
        stubs.execution.RequestDecision,
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=action),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == ["action.params.amount"]
    action = refund_action("tc_nan")
    action.params.MergeFrom(nested(value))
    error = rpc_error(
        stubs.execution.RequestDecision,
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=action),
    )
    assert list(field_violations(error)) == [f"action.params.{path}"]

    # InvokeAgent input.context
    request = envelope()
    request.input.context.MergeFrom(nested(value))
    error = rpc_error(stubs.execution.InvokeAgent, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == [f"input.context.{path}"]

    # SubmitDecision edited_params (keys that are not plain names are quoted)
    edited = struct_pb2.Struct()
    edited.update({"order id": value})
    error = rpc_error(decide, stubs, action_id, "lead", edited_params=edited)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == ['edited_params["order id"]']

    # ReportExecution outputs
    error = rpc_error(
        stubs.execution.ReportExecution,
        execution_pb.ReportExecutionRequest(
            action_id=action_id,
            result=execution_pb.EXECUTION_RESULT_SUCCEEDED,
            outputs=nested(value),
        ),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert list(field_violations(error)) == [f"outputs.{path}"]

    # EvaluatePolicy: the envelope's context and the action's params
    subject = envelope()
    subject.input.context.MergeFrom(nested(value))
    action = refund_action()
    action.params.update({"amount": value})
    error = rpc_error(
        stubs.policy.EvaluatePolicy,
        policy_pb.EvaluatePolicyRequest(envelope=subject, action=action),
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert set(field_violations(error)) == {
        f"envelope.input.context.{path}",
        "action.params.amount",
    }

    # Nothing of it was stored: the action still waits, unchanged, and can be decided.
    decided = decide(stubs, action_id, "lead")
    assert decided.action.state == pb.ACTION_STATE_APPROVED
    assert decided.action.params["amount"] == 4200


def deep_request(depth: int) -> bytes:
    """A RequestDecisionRequest whose params nest `depth` Structs deep."""
    request = execution_pb.RequestDecisionRequest(instance_id="inst_x", action=refund_action())
    inner = request.action.params
    for _ in range(depth):
        inner = inner.fields["a"].struct_value
    return request.SerializeToString()


UNDECODABLE = {
    "invalid UTF-8 in a string": b"\x0a\x03\xff\xfe\xfd",
    "corrupt wire format": b"\x0a\x10abc",
    "nested past the depth limit": deep_request(120),
}
DECISION = "/signoff.v1.ExecutionService/RequestDecision"
WATCH = "/signoff.v1.ExecutionService/WatchInstance"


def raw_unary(server: ServerProcess, method: str, token: str | None) -> Callable[..., bytes]:
    """Sends bytes as they are (no serializer) and returns the answer's bytes."""
    return server.channel(token).unary_unary(method)  # type: ignore[no-any-return]


def test_undecodable_bytes_are_invalid_arguments_after_authentication(tmp_path: Path) -> None:
    # A server of its own, so that its log holds this test's lines only.
    with ServerProcess(f"sqlite:///{tmp_path / 'signoff.db'}", tmp_path) as server:
        assert deep_request(30)  # the same message, less deep, is fine (checked below)
        started = time.monotonic()
        calls = 0
        for problem, data in UNDECODABLE.items():
            for _ in range(20):
                error = rpc_error(raw_unary(server, DECISION, AGENT_TOKEN), data)
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, problem
                assert list(field_violations(error)) == ["request"], problem
                assert error_info(error).reason == "INVALID_ARGUMENT"
                # Without credentials the caller learns nothing more than that.
                error = rpc_error(raw_unary(server, DECISION, None), data)
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED, problem
                calls += 2
            if problem.startswith("nested"):
                continue  # in other messages those bytes are a known string and unknown fields
            # Streams and the public health check decode the same way.
            stream = server.channel(AGENT_TOKEN).unary_stream(WATCH)
            error = rpc_error(lambda stream=stream, data=data: list(stream(data)))
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, problem
            check = raw_unary(server, "/grpc.health.v1.Health/Check", None)
            error = rpc_error(check, data)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, problem
            calls += 2
        elapsed = time.monotonic() - started

        # A well-formed request on the same raw path still works (and is only parsed once).
        decoded = raw_unary(server, DECISION, AGENT_TOKEN)
        error = rpc_error(decoded, deep_request(30))
        assert error_info(error).reason == "INSTANCE_NOT_FOUND"
        health = raw_unary(server, "/grpc.health.v1.Health/Check", None)(b"")
        assert health == b"\x08\x01"  # SERVING

    text = server.log_path.read_text()
    assert "Traceback" not in text
    warnings = [line for line in log_lines(server) if line["level"] in ("WARNING", "ERROR")]
    assert all(str(line["message"]).startswith("undecodable request") for line in warnings)
    # One line at once, then at most one per 10 s however many arrive.
    assert 1 <= len(warnings) <= 1 + int(elapsed // 10) + 1 < calls
    # The RPC log line still names the ids of a request that decoded.
    rpc_lines = [line for line in log_lines(server) if line.get("error_reason")]
    assert any(line.get("instance_id") == "inst_x" for line in rpc_lines)


def test_two_authorization_headers_are_refused(server: ServerProcess) -> None:
    stub = server.stubs(None).execution
    request = execution_pb.GetInstanceRequest(instance_id="inst_missing")
    good, bad = f"Bearer {AGENT_TOKEN}", "Bearer not-a-token"
    for headers in ([good, bad], [bad, good], [good, good]):
        metadata = [("authorization", header) for header in headers]
        error = rpc_error(stub.GetInstance, request, metadata=metadata)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(error).reason == "AMBIGUOUS_CREDENTIALS"
    # One header: authenticated (and then the instance is simply not there).
    error = rpc_error(stub.GetInstance, request, metadata=[("authorization", good)])
    assert error_info(error).reason == "INSTANCE_NOT_FOUND"


def test_an_evidence_hash_that_is_not_a_sha256_is_an_invalid_argument(stubs: Stubs) -> None:
    _, action_id, sha = waiting_action(stubs)

    def vote(evidence: str) -> approval_pb.SubmitDecisionResponse:
        return decide(stubs, action_id, "lead", evidence_snapshot_hash=evidence)

    for malformed in ("abc", sha.upper(), sha[:-1], sha.removeprefix("sha256:"), sha + "0"):
        error = rpc_error(vote, malformed)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, malformed
        assert list(field_violations(error)) == ["evidence_snapshot_hash"]
    # A well-formed hash of something else is still EVIDENCE_CHANGED.
    other = "sha256:" + "0" * 64
    assert error_info(rpc_error(vote, other)).reason == "EVIDENCE_CHANGED"
    assert vote(sha).action.state == pb.ACTION_STATE_APPROVED


def test_the_cli_checks_the_evidence_hash_before_calling(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No server anywhere: the CLI refuses before it connects.
    args = ["approve", "act_x", "--reason", "ok", "--target", "127.0.0.1:1"]
    with pytest.raises(SystemExit) as exited:
        cli.main([*args, "--evidence-hash", "deadbeef"])
    assert exited.value.code == 2
    assert "is not an action_sha256" in capsys.readouterr().err


def test_vote_request_ids_are_scoped_per_tenant(stubs: Stubs) -> None:
    first, second = (f"tenant_{uuid.uuid4().hex[:8]}" for _ in range(2))
    _, first_action, _ = waiting_action(stubs, first)
    _, second_action, _ = waiting_action(stubs, second)
    shared = f"dec_{uuid.uuid4().hex}"

    def vote(tenant: str, action_id: str, verdict: int) -> approval_pb.SubmitDecisionResponse:
        approver = stubs.as_(f"lead_{tenant}", tenant=tenant)
        return approver.approval.SubmitDecision(  # type: ignore[no-any-return]
            approval_pb.SubmitDecisionRequest(
                action_id=action_id, verdict=verdict, reason="checked", request_id=shared
            )
        )

    # The same key in two tenants: two independent decisions.
    approved = vote(first, first_action, pb.VERDICT_APPROVE)
    rejected = vote(second, second_action, pb.VERDICT_REJECT)
    assert approved.action.state == pb.ACTION_STATE_APPROVED
    assert rejected.action.state == pb.ACTION_STATE_REJECTED
    assert approved.record.record_id != rejected.record.record_id
    # Within a tenant the key still means one request: a retry gets the original answer ...
    assert vote(second, second_action, pb.VERDICT_REJECT).record == rejected.record
    # ... and another request under it is refused.
    error = rpc_error(vote, second, second_action, pb.VERDICT_APPROVE)
    assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(error).reason == "IDEMPOTENCY_KEY_REUSED"
    _, another, _ = waiting_action(stubs, first)
    error = rpc_error(vote, first, another, pb.VERDICT_APPROVE)
    assert error_info(error).reason == "IDEMPOTENCY_KEY_REUSED"
