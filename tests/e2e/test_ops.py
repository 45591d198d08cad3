"""What operators type: grpcurl through server reflection, and the signoff CLI."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from google.protobuf import json_format

from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from signoff_client import Signoff
from tests.support import AGENT_TOKEN, ServerProcess, envelope, mint, refund_action

BIN = Path(sys.executable).parent


def grpcurl(
    server: ServerProcess, *args: str, data: object | None = None, token: str = AGENT_TOKEN
) -> str:
    command = [str(BIN / "grpcurl"), "-plaintext", "-H", f"authorization: Bearer {token}"]
    if data is not None:
        command += ["-d", json.dumps(data)]
    result = subprocess.run(
        [*command, server.target, *args], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def cli(server: ServerProcess, *args: str, token: str = AGENT_TOKEN) -> str:
    result = subprocess.run(
        [str(BIN / "signoff"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "SIGNOFF_TARGET": server.target, "SIGNOFF_TOKEN": token},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_reflection_lists_and_describes_the_services(server: ServerProcess) -> None:
    listed = grpcurl(server, "list").split()
    for service in (
        "signoff.v1.ExecutionService",
        "signoff.v1.ApprovalService",
        "signoff.v1.AuditService",
        "grpc.health.v1.Health",
    ):
        assert service in listed
    described = grpcurl(server, "describe", "signoff.v1.ExecutionService")
    assert "rpc WatchInstance ( .signoff.v1.WatchInstanceRequest ) returns ( stream" in described
    assert json.loads(grpcurl(server, "grpc.health.v1.Health/Check")) == {"status": "SERVING"}


def test_a_whole_approval_by_grpcurl_alone(server: ServerProcess) -> None:
    tenant = f"tenant_ops_{os.getpid()}"
    instance = json.loads(
        grpcurl(
            server,
            "signoff.v1.ExecutionService/InvokeAgent",
            data={
                "request_id": f"req_ops_{os.getpid()}",
                "tenant_id": tenant,
                "user": {"user_id": "usr_771"},
                "agent": {"agent_id": "agt_support"},
                "input": {"intent": "support.refund"},
            },
        )
    )["instance"]
    decision = json.loads(
        grpcurl(
            server,
            "signoff.v1.ExecutionService/RequestDecision",
            data={
                "instance_id": instance["instanceId"],
                "action": {
                    "tool_call_id": "tc_121",
                    "tool": "adp_payments.issue_refund",
                    "params": {"order_id": "ord_881", "amount": 4200},
                    "risk_class": "RISK_CLASS_DESTRUCTIVE",
                },
            },
        )
    )
    assert decision["outcome"] == "OUTCOME_WAITING_FOR_HUMAN"
    lead = mint("user_finance_lead_77")
    pending = json.loads(
        grpcurl(
            server,
            "signoff.v1.ApprovalService/ListPendingApprovals",
            data={"tenant_id": tenant},
            token=lead,
        )
    )
    assert [a["actionId"] for a in pending["actions"]] == [decision["actionId"]]
    decided = json.loads(
        grpcurl(
            server,
            "signoff.v1.ApprovalService/SubmitDecision",
            data={
                "action_id": decision["actionId"],
                "verdict": "VERDICT_APPROVE",
                "reason": "verified",
                "request_id": "ops-approve-1",
                "evidence_snapshot_hash": decision["actionSha256"],
            },
            token=lead,
        )
    )
    assert decided["action"]["state"] == "ACTION_STATE_APPROVED"
    grpcurl(
        server,
        "signoff.v1.ExecutionService/CompleteInstance",
        data={"instance_id": instance["instanceId"]},
    )
    # The stream replays and, after the terminal event, ends by itself.
    streamed = grpcurl(
        server,
        "signoff.v1.ExecutionService/WatchInstance",
        data={"instance_id": instance["instanceId"]},
    )
    assert streamed.count('"event"') == 4 and "EVENT_TYPE_INSTANCE_COMPLETED" in streamed


def test_operator_cli(server: ServerProcess) -> None:
    stubs = server.stubs()
    tenant = f"tenant_cli_{os.getpid()}"
    instance_id = stubs.execution.InvokeAgent(envelope(tenant_id=tenant)).instance.instance_id
    first, second = (
        stubs.execution.RequestDecision(
            execution_pb.RequestDecisionRequest(
                instance_id=instance_id, action=refund_action(f"tc_{i}")
            )
        ).action_id
        for i in range(2)
    )
    alice, bob = mint("alice"), mint("bob")
    pending = cli(server, "pending", "--tenant", tenant, token=alice)
    assert first in pending and second in pending and "adp_payments.issue_refund" in pending
    assert "APPROVED by alice" in cli(server, "approve", first, "--reason", "ok", token=alice)
    assert "REJECTED by bob" in cli(server, "reject", second, "--reason", "no", token=bob)
    assert (
        cli(server, "pending", "--tenant", tenant, token=alice).strip()
        == "no actions wait for a decision"
    )
    assert "WAITING_FOR_HUMAN" not in cli(server, "instances", "--tenant", tenant)
    stubs.execution.CompleteInstance(execution_pb.CompleteInstanceRequest(instance_id=instance_id))
    watched = cli(server, "watch", instance_id).splitlines()
    assert [line.split()[0] for line in watched] == ["#1", "#2", "#3", "#4", "#5", "#6"]
    assert "ACTION_DECIDED" in watched[3] and "by alice" in watched[3]
    assert watched[-1].startswith("#6  INSTANCE_COMPLETED")

    failed = subprocess.run(
        [
            str(BIN / "signoff"),
            "approve",
            first,
            "--reason",
            "again",
            "--target",
            server.target,
            "--token",
            bob,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert failed.returncode == 1
    assert "ABORTED [ALREADY_DECIDED]" in failed.stderr


def run_cli(
    server: ServerProcess, *args: str, token: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "signoff"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin if stdin is not None else "",
        env={**os.environ, "SIGNOFF_TARGET": server.target, "SIGNOFF_TOKEN": token},
    )


def test_approve_with_edits(server: ServerProcess) -> None:
    stubs = server.stubs()
    tenant = f"tenant_edit_{os.getpid()}"
    instance_id = stubs.execution.InvokeAgent(envelope(tenant_id=tenant)).instance.instance_id
    asked = [
        stubs.execution.RequestDecision(
            execution_pb.RequestDecisionRequest(
                instance_id=instance_id, action=refund_action(f"tc_edit_{i}")
            )
        )
        for i in range(2)
    ]
    first, second = (a.action_id for a in asked)
    lead = mint("alice")
    # Numbers as the agent sent them: 4200, not 4200.0.
    pending = cli(server, "pending", "--tenant", tenant, token=lead)
    assert re.search(r'"amount": 4200[,}]', pending) and "4200.0" not in pending

    # Refused input: one line on standard error, exit 2, nothing submitted.
    edit = ["approve", first, "--reason", "net of the voucher"]
    for args, stdin, says in (
        (["--set", "amount=3000"], None, "pass --yes"),  # not a terminal, no --yes
        (["--set", "amount=3000", "--params-json", "-", "--yes"], "{}", "not both"),
        (["--params-json", "-", "--yes"], "{not json", "not JSON"),
        (["--params-json", "-", "--yes"], "[1]", "must be a JSON object"),
        (["--params-json", "/nonexistent/params.json", "--yes"], None, "--params-json"),
        (["--set", "amount", "--yes"], None, "expected KEY=VALUE"),
        (["--set", "amount.cents=1", "--yes"], None, "amount is 4200, not an object"),
        (["--set", "amount=4200", "--yes"], None, "leaves the params"),
        (["--set", "amount=1", "--yes", "--evidence-hash", "sha256:" + "0" * 64], None, "again"),
    ):
        failed = run_cli(server, *edit, *args, token=lead, stdin=stdin)
        assert failed.returncode == 2, (args, failed.stdout, failed.stderr)
        assert len(failed.stderr.strip().splitlines()) == 1 and says in failed.stderr, args
    unknown = run_cli(server, "approve", "act_nope", "--reason", "x", "--set", "a=1", token=lead)
    assert unknown.returncode == 2 and "no action act_nope waits" in unknown.stderr
    assert len(unknown.stderr.strip().splitlines()) == 1
    assert {a.action_id for a in pending_actions(server, tenant, lead)} == {first, second}

    # --set: JSON values when they parse, else strings; dotted paths make nested objects.
    done = run_cli(
        server,
        *edit,
        "--set",
        "amount=3000",
        "--set",
        "note=partial refund",
        "--set",
        "meta.voucher=true",
        "--yes",
        token=lead,
    )
    assert done.returncode == 0, done.stderr
    assert "  ~ amount: 4200 -> 3000\n" in done.stdout
    assert '  + note: "partial refund"\n' in done.stdout
    assert '  + meta: {"voucher": true}\n' in done.stdout
    assert f"{first} APPROVED by alice with edited params" in done.stdout
    # The agent's repeat returns the edited params; the vote is bound to the hash shown.
    again = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(
            instance_id=instance_id, action=refund_action("tc_edit_0")
        )
    )
    assert again.outcome == pb.OUTCOME_APPROVED
    assert json_format.MessageToDict(again.action.params) == {
        "order_id": "ord_881",
        "amount": 3000,
        "currency": "INR",
        "note": "partial refund",
        "meta": {"voucher": True},
    }
    assert again.action.proposed_sha256 == asked[0].action_sha256 != again.action_sha256
    assert asked[0].action_sha256 in done.stdout

    # --params-json -: the complete new params from standard input.
    replaced = {"order_id": "ord_881", "amount": 100, "currency": "INR"}
    done = run_cli(
        server,
        "approve",
        second,
        "--reason",
        "goodwill only",
        "--params-json",
        "-",
        "--yes",
        token=lead,
        stdin=json.dumps(replaced),
    )
    assert done.returncode == 0, done.stderr
    assert "  ~ amount: 4200 -> 100\n" in done.stdout
    again = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(
            instance_id=instance_id, action=refund_action("tc_edit_1")
        )
    )
    assert json_format.MessageToDict(again.action.params) == replaced
    # Decided now: an edit finds nothing waiting.
    late = run_cli(server, *edit, "--set", "amount=1", "--yes", token=lead)
    assert late.returncode == 2 and "no action" in late.stderr


def pending_actions(server: ServerProcess, tenant: str, token: str) -> list[pb.Action]:
    with Signoff.connect(server.target, token=token) as client:
        return client.list_pending(tenant)
