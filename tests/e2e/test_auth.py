"""Who may do what: authentication modes, the authorization matrix over every RPC,
tenancy without existence leaks, and evidence binding."""

import http.server
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from signoff.auth.authenticators import JwtVerifier, jwks_json, token_sha256
from signoff.domain.errors import Unauthenticated
from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import policy_service_pb2 as policy_pb
from signoff.v1 import types_pb2 as pb
from tests.support import (
    AUDIENCE,
    AUTH_CONFIG,
    ISSUER,
    SIGNING_KEY,
    ServerProcess,
    Stubs,
    envelope,
    error_info,
    lookup_action,
    mint,
    refund_action,
)

TENANT = "tenant_auth_a"
OTHER = "tenant_auth_b"


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        return error.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.fixture(scope="module")
def world(server: ServerProcess) -> dict[str, str]:
    """One instance with a waiting action and a decided one, in TENANT."""
    agent = server.stubs(mint("agt_a", "agent", TENANT))
    instance_id = agent.execution.InvokeAgent(envelope(tenant_id=TENANT)).instance.instance_id
    waiting = agent.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=refund_action("tc_w"))
    )
    done = agent.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=lookup_action("tc_d"))
    )
    record_id = (
        server.stubs(mint("ops", "human", TENANT, ("admin",)))
        .audit.ListDecisionRecords(audit_pb.ListDecisionRecordsRequest(instance_id=instance_id))
        .records[0]
        .record_id
    )
    consumable = agent.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=lookup_action("tc_c"))
    )
    return {
        "instance": instance_id,
        "waiting": waiting.action_id,
        "done": done.action_id,
        "consumable": consumable.action_id,
        "record": record_id,
    }


def grant(server: ServerProcess, world: dict[str, str], tool_call_id: str) -> str:
    """A fresh grant, as the instance's agent gets it by asking again."""
    agent = server.stubs(mint("agt_a", "agent", TENANT))
    answer = agent.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(
            instance_id=world["instance"], action=lookup_action(tool_call_id)
        )
    )
    return str(answer.grant_token) or "grt_spent"  # once spent, any well-formed token


# Every RPC, called the way its rightful caller would, with ids from `world`. The verdict
# is a reject on an already decided action: authorized callers reach the state check.
CALLS: dict[str, Callable[[Stubs, dict[str, str]], Any]] = {
    "InvokeAgent": lambda s, w: s.execution.InvokeAgent(
        envelope(tenant_id=TENANT, request_id=f"req_{uuid.uuid4().hex}")
    ),
    "RequestDecision": lambda s, w: s.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=w["instance"], action=lookup_action("tc_d"))
    ),
    "WatchInstance": lambda s, w: next(
        s.execution.WatchInstance(
            execution_pb.WatchInstanceRequest(instance_id=w["instance"]), timeout=10
        )
    ),
    "ReportExecution": lambda s, w: s.execution.ReportExecution(
        execution_pb.ReportExecutionRequest(
            action_id=w["done"],
            result=execution_pb.EXECUTION_RESULT_FAILED,
            evidence_ref="x",
            grant_token=grant(s.server, w, "tc_d"),
        )
    ),
    "ConsumeGrant": lambda s, w: s.execution.ConsumeGrant(
        execution_pb.ConsumeGrantRequest(
            action_id=w["consumable"], grant_token=grant(s.server, w, "tc_c")
        )
    ),
    "CompleteInstance": lambda s, w: s.execution.GetInstance(  # completing would end `world`
        execution_pb.GetInstanceRequest(instance_id=w["instance"])
    ),
    "CancelInstance": lambda s, w: s.execution.CancelInstance(
        execution_pb.CancelInstanceRequest(instance_id=f"ins_{uuid.uuid4().hex}")
    ),
    "GetInstance": lambda s, w: s.execution.GetInstance(
        execution_pb.GetInstanceRequest(instance_id=w["instance"])
    ),
    "ListInstances": lambda s, w: s.execution.ListInstances(execution_pb.ListInstancesRequest()),
    "ListPendingApprovals": lambda s, w: s.approval.ListPendingApprovals(
        approval_pb.ListPendingApprovalsRequest()
    ),
    "SubmitDecision": lambda s, w: s.approval.SubmitDecision(
        approval_pb.SubmitDecisionRequest(
            action_id=w["done"],
            verdict=pb.VERDICT_REJECT,
            reason="matrix",
            request_id=f"m_{uuid.uuid4().hex}",
        )
    ),
    "GetDecisionRecord": lambda s, w: s.audit.GetDecisionRecord(
        audit_pb.GetDecisionRecordRequest(record_id=w["record"])
    ),
    "ListDecisionRecords": lambda s, w: s.audit.ListDecisionRecords(
        audit_pb.ListDecisionRecordsRequest()
    ),
    "ListEvents": lambda s, w: s.audit.ListEvents(
        audit_pb.ListEventsRequest(instance_id=w["instance"])
    ),
    "EvaluatePolicy": lambda s, w: s.policy.EvaluatePolicy(
        policy_pb.EvaluatePolicyRequest(instance_id=w["instance"], action=lookup_action())
    ),
    "GetPolicy": lambda s, w: s.policy.GetPolicy(policy_pb.GetPolicyRequest()),
}

AGENT = ("agt_a", "agent", ())
APPROVER = ("lead_a", "human", ("approver",))
ADMIN = ("ops_a", "human", ("admin",))
# Rightful caller, and a caller of the same tenant whose kind or role is wrong.
MATRIX = {
    "InvokeAgent": (AGENT, APPROVER),
    "RequestDecision": (AGENT, ADMIN),
    "WatchInstance": (AGENT, None),
    "ReportExecution": (AGENT, APPROVER),
    "ConsumeGrant": (AGENT, ADMIN),
    "CompleteInstance": (AGENT, None),
    "CancelInstance": (ADMIN, APPROVER),
    "GetInstance": (APPROVER, None),
    "ListInstances": (AGENT, None),
    "ListPendingApprovals": (APPROVER, AGENT),
    "SubmitDecision": (APPROVER, AGENT),
    "GetDecisionRecord": (ADMIN, APPROVER),
    "ListDecisionRecords": (ADMIN, AGENT),
    "ListEvents": (ADMIN, APPROVER),
    "EvaluatePolicy": (APPROVER, None),
    "GetPolicy": (APPROVER, None),
}
EXPECTED_OK = {
    # Reaching the handler means the caller got through: these answer a domain error.
    "ReportExecution": grpc.StatusCode.OK,
    "CancelInstance": grpc.StatusCode.NOT_FOUND,
    "SubmitDecision": grpc.StatusCode.ABORTED,
}
# RPCs naming an id: another tenant's caller must get NOT_FOUND, as for a missing id.
BY_ID = {
    "RequestDecision",
    "WatchInstance",
    "ReportExecution",
    "ConsumeGrant",
    "GetInstance",
    "SubmitDecision",
    "GetDecisionRecord",
    "ListEvents",
    "EvaluatePolicy",
}


@pytest.mark.parametrize("rpc", sorted(CALLS))
def test_authorization_matrix(server: ServerProcess, world: dict[str, str], rpc: str) -> None:
    call = CALLS[rpc]
    rightful, wrong = MATRIX[rpc]
    assert code_of(lambda: call(server.stubs(None), world)) == grpc.StatusCode.UNAUTHENTICATED
    assert (
        code_of(lambda: call(server.stubs("not-a-token"), world)) == grpc.StatusCode.UNAUTHENTICATED
    )
    right = server.stubs(mint(rightful[0], rightful[1], TENANT, rightful[2]))
    assert code_of(lambda: call(right, world)) == EXPECTED_OK.get(rpc, grpc.StatusCode.OK)
    if wrong is not None:
        wrong_role = server.stubs(mint(wrong[0], wrong[1], TENANT, wrong[2]))
        assert code_of(lambda: call(wrong_role, world)) == grpc.StatusCode.PERMISSION_DENIED
    if rpc in BY_ID:
        stranger = server.stubs(mint(rightful[0], rightful[1], OTHER, rightful[2]))
        assert code_of(lambda: call(stranger, world)) == grpc.StatusCode.NOT_FOUND


def test_another_tenant_sees_nothing(server: ServerProcess, world: dict[str, str]) -> None:
    stranger = server.stubs(mint("agt_b", "agent", OTHER))
    listed = stranger.execution.ListInstances(execution_pb.ListInstancesRequest(tenant_id=TENANT))
    assert list(listed.instances) == []
    inbox = server.stubs(mint("lead_b", "human", OTHER, ("approver",)))
    pending = inbox.approval.ListPendingApprovals(approval_pb.ListPendingApprovalsRequest())
    assert world["waiting"] not in [a.action_id for a in pending.actions]
    with pytest.raises(grpc.RpcError) as denied:
        stranger.execution.InvokeAgent(envelope(tenant_id=TENANT))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(denied.value).reason == "TENANT_NOT_ALLOWED"


@pytest.mark.parametrize(
    "token,reason",
    [
        (lambda: mint("x", lifetime=-60), "TOKEN_EXPIRED"),
        (lambda: mint("x", issuer="https://evil.example"), "WRONG_ISSUER"),
        (lambda: mint("x", audience="someone-else"), "WRONG_AUDIENCE"),
        (
            lambda: mint("x", key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "INVALID_TOKEN",
        ),
        (lambda: "a.b.c", "INVALID_TOKEN"),
    ],
    ids=["expired", "wrong issuer", "wrong audience", "forged signature", "garbage"],
)
def test_bad_jwts_are_refused(server: ServerProcess, token: Callable[[], str], reason: str) -> None:
    with pytest.raises(grpc.RpcError) as refused:
        server.stubs(token()).policy.GetPolicy(policy_pb.GetPolicyRequest())
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(refused.value).reason == reason


def test_the_approver_is_who_the_credentials_say(server: ServerProcess) -> None:
    agent = server.stubs()
    instance_id = agent.execution.InvokeAgent(envelope()).instance.instance_id
    waiting = agent.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=refund_action())
    )
    decided = server.as_("alice").approval.SubmitDecision(
        approval_pb.SubmitDecisionRequest(
            action_id=waiting.action_id,
            verdict=pb.VERDICT_APPROVE,
            reason="checked",
            request_id=f"r_{uuid.uuid4().hex}",
            evidence_snapshot_hash=waiting.action_sha256,
        )
    )
    assert decided.action.decided_by == "alice"
    assert decided.record.approvals[0].approver == "alice"
    assert decided.record.approvals[0].evidence_snapshot_hash == waiting.action_sha256


def test_a_vote_on_changed_evidence_is_refused(server: ServerProcess) -> None:
    agent = server.stubs()
    instance_id = agent.execution.InvokeAgent(envelope()).instance.instance_id
    waiting = agent.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=refund_action())
    )
    stale = "sha256:" + "0" * 64
    with pytest.raises(grpc.RpcError) as refused:
        server.as_("alice").approval.SubmitDecision(
            approval_pb.SubmitDecisionRequest(
                action_id=waiting.action_id,
                verdict=pb.VERDICT_APPROVE,
                request_id=f"r_{uuid.uuid4().hex}",
                evidence_snapshot_hash=stale,
            )
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(refused.value).reason == "EVIDENCE_CHANGED"
    assert error_info(refused.value).metadata["action_sha256"] == waiting.action_sha256


def test_static_tokens_from_the_auth_config(
    make_database: Callable[[str], str], tmp_path: Path
) -> None:
    config = tmp_path / "auth.yaml"
    config.write_text(
        "tokens:\n"
        f"  - sha256: {token_sha256('agent-secret')}\n"
        "    principal: {id: agt_static, kind: agent, tenant: tenant_static}\n"
    )
    with ServerProcess(make_database("sqlite"), tmp_path, auth_config=config) as server:
        ok = server.stubs("agent-secret").execution.InvokeAgent(envelope(tenant_id="tenant_static"))
        assert ok.instance.state == pb.INSTANCE_STATE_RUNNING
        with pytest.raises(grpc.RpcError) as refused:
            server.stubs("agent-secrets").execution.ListInstances(
                execution_pb.ListInstancesRequest()
            )
        assert error_info(refused.value).reason == "INVALID_TOKEN"


def test_development_mode_prints_tokens_and_keeps_to_loopback(
    make_database: Callable[[str], str], tmp_path: Path
) -> None:
    url = make_database("sqlite")
    signoff = Path(sys.executable).parent / "signoff"
    exposed = subprocess.run(
        [signoff, "serve", "--host", "0.0.0.0", "--port", "0", "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert exposed.returncode == 2 and "without --auth-config" in exposed.stderr

    server = subprocess.Popen(
        [signoff, "serve", "--port", "0", "--http-port", "0", "--database-url", url],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        tokens, target = {}, ""
        for line in server.stdout:
            if line.strip().startswith("export SIGNOFF_"):
                name, token = line.strip().removeprefix("export ").split("=", 1)
                tokens[name] = token
            if line.startswith("signoff listening on "):
                target = line.split()[-1]
                break
        assert set(tokens) == {
            "SIGNOFF_ADMIN_TOKEN",
            "SIGNOFF_APPROVER_TOKEN",
            "SIGNOFF_AGENT_TOKEN",
        }
        probe = ServerProcess(url, tmp_path)
        probe.target = target
        agent = probe.stubs(tokens["SIGNOFF_AGENT_TOKEN"])
        created = agent.execution.InvokeAgent(envelope())
        assert created.instance.state == pb.INSTANCE_STATE_RUNNING
        assert code_of(
            lambda: probe.stubs(None).policy.GetPolicy(policy_pb.GetPolicyRequest())
        ) == (grpc.StatusCode.UNAUTHENTICATED)
        # The tokens are never written anywhere the server keeps.
        db = Path(url.removeprefix("sqlite:///"))
        stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
        assert tokens["SIGNOFF_AGENT_TOKEN"].encode() not in stored
    finally:
        server.terminate()
        server.wait(30)


def test_a_trusted_jwt_is_still_refused_once_it_expires() -> None:
    """Verified tokens are remembered (no signature check per call), never past their exp."""
    verifier = JwtVerifier(
        issuer=ISSUER, audience=AUDIENCE, leeway=0, jwks_file=str(AUTH_CONFIG.parent / "jwks.json")
    )
    token = mint("alice", lifetime=2)
    assert verifier.verify(token).id == "alice"
    assert verifier.verify(token).id == "alice"  # from memory
    time.sleep(3)
    with pytest.raises(Unauthenticated) as refused:
        verifier.verify(token)
    assert refused.value.reason == "TOKEN_EXPIRED"


class _JwksEndpoint:
    """The issuer's JWKS URL on loopback; it answers only once the test releases it."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.fetches = 0
        document = jwks_json({"test-key": SIGNING_KEY.public_key()}).encode()
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                endpoint.fetches += 1
                endpoint.released.wait(30)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(document)))
                self.end_headers()
                self.wfile.write(document)

            def log_message(self, *args: Any) -> None:
                pass

        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_port}/jwks.json"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self.http.shutdown()


def test_keys_from_a_jwks_url_never_stall_other_calls(
    make_database: Callable[[str], str], tmp_path: Path
) -> None:
    """A slow identity provider delays only the calls whose tokens need its keys."""
    jwks = _JwksEndpoint()
    config = tmp_path / "auth.yaml"
    config.write_text(
        f"tokens:\n  - sha256: {token_sha256('static-agent-token')}\n"
        "    principal: {id: agt_static, kind: agent, tenant: tenant_jwks}\n"
        f"jwt:\n  issuer: {ISSUER}\n  audience: {AUDIENCE}\n  jwks_url: {jwks.url}\n"
    )
    try:
        with ServerProcess(make_database("sqlite"), tmp_path, auth_config=config) as server:
            waiting = server.stubs(mint("agt_jwt", "agent", "tenant_jwks")).execution
            first = waiting.InvokeAgent.future(envelope(tenant_id="tenant_jwks"), timeout=60)
            deadline = time.monotonic() + 30
            while not jwks.fetches and time.monotonic() < deadline:
                time.sleep(0.05)
            assert jwks.fetches, "the server never asked for the keys"
            # The JWT call waits on the issuer; a call with a static token goes through.
            other = server.stubs("static-agent-token").execution
            assert other.InvokeAgent(envelope(tenant_id="tenant_jwks"), timeout=20).instance
            assert not first.done()
            jwks.released.set()
            assert first.result().instance.state == pb.INSTANCE_STATE_RUNNING
    finally:
        jwks.close()


SERVICES = [
    module.DESCRIPTOR.services_by_name[name]
    for module, name in [
        (execution_pb, "ExecutionService"),
        (approval_pb, "ApprovalService"),
        (audit_pb, "AuditService"),
        (policy_pb, "PolicyService"),
    ]
]
EVERY_METHOD = [(service, method) for service in SERVICES for method in service.methods]


@pytest.mark.parametrize(
    "service,method", EVERY_METHOD, ids=[f"{s.name}.{m.name}" for s, m in EVERY_METHOD]
)
def test_every_method_goes_through_the_call_layer(
    server: ServerProcess, service: Any, method: Any
) -> None:
    """Every RPC, those added since the matrix too (plans, checkpoints, grants), on both
    listeners: refused without credentials, and bytes that are not its request message
    are INVALID_ARGUMENT for a caller with credentials (the layer decodes; gRPC would
    answer UNKNOWN)."""
    path = f"/{service.full_name}/{method.name}"
    undecodable = b"\x0a\xff"  # field 1, a length past the end

    def grpc_code(token: str | None, data: bytes) -> grpc.StatusCode:
        channel = server.channel(token)
        if method.server_streaming:
            stream = channel.unary_stream(path)
            return code_of(lambda: list(stream(data, timeout=10)))
        return code_of(lambda: channel.unary_unary(path)(data, timeout=10))

    assert grpc_code(None, b"") == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_code(None, undecodable) == grpc.StatusCode.UNAUTHENTICATED
    callers = [mint(name, kind, TENANT, roles) for name, kind, roles in (AGENT, APPROVER, ADMIN)]
    codes = {grpc_code(token, undecodable) for token in callers}
    # Decoded once the caller is admitted: the rightful one learns it sent no request.
    assert grpc.StatusCode.INVALID_ARGUMENT in codes
    assert codes <= {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED}
    if method.server_streaming:
        return  # Connect streams frame their messages; test_http covers them
    answer = httpx.post(
        f"{server.http_url}{path}", content=b"{}", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 401 and answer.json()["code"] == "unauthenticated"
