"""Operations: Prometheus metrics scraped over HTTP and JSON log lines read from the server's
log file, on real server processes (issue 7, items 2 and 3)."""

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from tests.support import (
    AGENT_TOKEN,
    EXAMPLE_POLICY,
    ServerProcess,
    Stubs,
    decide,
    envelope,
    eventually,
    log_lines,
    lookup_action,
    mint,
    refund_action,
    scrape,
)

APPROVER = "user_ops_9"  # an approver and a policy admin in the example bundle
EXECUTION = "signoff.v1.ExecutionService"
# A test-only tool that waits on two gates at once.
TWO_GATES_RULE = """
workflow_findings contains {"rule": "T_TWO_GATES_A", "effect": "require_approval",
	"gate": "GATE_DEFAULT", "reason": "test"} if action.tool == "adp_test.two_gates"

workflow_findings contains {"rule": "T_TWO_GATES_B", "effect": "require_approval",
	"gate": "GATE_POLICY_ERROR", "reason": "test"} if action.tool == "adp_test.two_gates"
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example bundle, with gates that time out after a second, a two-gate tool, and no
    intents declared."""
    directory = tmp_path_factory.mktemp("bundle") / "policies"
    shutil.copytree(EXAMPLE_POLICY, directory)
    gates = directory / "gates.yaml"
    text = gates.read_text()
    for gate in ("GATE_FINANCE_APPROVAL", "GATE_PUBLISH_BLOCK"):
        start = text.index(f"  {gate}:")
        ttl = text.index("ttl: ", start)
        text = text[:ttl] + "ttl: 1s" + text[text.index("\n", ttl) :]
    gates.write_text(text.replace("reminders: [4h, 20h]", "reminders: []"))
    with (directory / "workflows.rego").open("a") as rules:
        rules.write(TWO_GATES_RULE)
    # Every intent open (no compiled tool manifest): these tests use tools of their own.
    (directory / "intents.yaml").unlink()
    return directory


@pytest.fixture(scope="module")
def observed(
    database_kind: str,
    make_database: Callable[[str], str],
    bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    process = ServerProcess(
        make_database(database_kind),
        tmp_path_factory.mktemp("logs"),
        "--metrics-port",
        "0",
        "--metrics-interval",
        "0.2",
        "--timer-interval",
        "0.2",
        policy=bundle,
    )
    with process:
        yield process


# -- helpers -----------------------------------------------------------------------------


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    return value(scrape(server), name, **labels)


def rpc_lines(server: ServerProcess, method: str) -> list[dict[str, Any]]:
    return [
        line
        for line in log_lines(server)
        if line.get("logger") == "signoff.rpc" and line.get("method") == method
    ]


def listening_ports(pid: int) -> set[int]:
    """TCP ports the process listens on (Linux /proc: its sockets in the LISTEN state)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def start(stubs: Stubs, action: pb.ProposedAction, **overrides: Any) -> tuple[str, Any]:
    """A new instance and the answer to its action."""
    instance = stubs.execution.InvokeAgent(envelope(**overrides)).instance
    answer = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance.instance_id, action=action)
    )
    return instance.instance_id, answer


def proposed(tool: str, risk: int, **params: Any) -> pb.ProposedAction:
    action = pb.ProposedAction(
        tool_call_id=f"tc_{uuid.uuid4().hex[:8]}", tool=tool, risk_class=risk
    )
    action.params.update(params)
    return action


def approve(server: ServerProcess, action_id: str) -> None:
    decide(server, action_id, APPROVER, reason="looks right")


# -- metrics -----------------------------------------------------------------------------


def test_rpcs_are_counted_by_method_and_code(observed: ServerProcess) -> None:
    codes = ("OK", "NOT_FOUND", "UNAUTHENTICATED")

    def counts() -> list[float]:
        """GetInstance calls by code, and the count of its latency histogram."""
        samples = scrape(observed)
        method = {"grpc_service": EXECUTION, "grpc_method": "GetInstance"}
        handled = [
            value(samples, "grpc_server_handled_total", **method, grpc_code=code) for code in codes
        ]
        return [*handled, value(samples, "grpc_server_handling_seconds_count", **method)]

    before = counts()
    stubs = observed.stubs()
    instance = stubs.execution.InvokeAgent(envelope()).instance
    stubs.execution.GetInstance(execution_pb.GetInstanceRequest(instance_id=instance.instance_id))
    with pytest.raises(grpc.RpcError) as missing:
        stubs.execution.GetInstance(execution_pb.GetInstanceRequest(instance_id="ins_nothere"))
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as refused:  # refused by authentication, still counted
        observed.stubs("not-a-token").execution.GetInstance(
            execution_pb.GetInstanceRequest(instance_id=instance.instance_id)
        )
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED

    # An error's status reaches the client just before the server counts it: wait a little.
    expected = [before[0] + 1, before[1] + 1, before[2] + 1, before[3] + 3]
    assert eventually(lambda: counts() == expected), (counts(), expected)


def test_waiting_approvals_by_gate_follow_the_database(observed: ServerProcess) -> None:
    stubs = observed.stubs()
    decided_before = metric(observed, "signoff_time_to_decision_seconds_count", outcome="approved")
    _, answer = start(stubs, proposed("adp_test.two_gates", pb.RISK_CLASS_NETWORK, to="x"))
    assert answer.outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    assert sorted(answer.action.gate_ids) == ["GATE_DEFAULT", "GATE_POLICY_ERROR"]

    def waiting(expected: float) -> bool:
        samples = scrape(observed)
        return (
            all(
                value(samples, "signoff_approvals_waiting", gate=gate) == expected
                for gate in ("GATE_DEFAULT", "GATE_POLICY_ERROR")
            )
            and ("signoff_approvals_waiting", frozenset({("gate", "GATE_PUBLISH_BLOCK")}))
            in samples
        )

    assert eventually(lambda: waiting(1)), scrape(observed)  # counted on both of its gates
    approve(observed, answer.action_id)
    assert eventually(lambda: waiting(0)), scrape(observed)  # back to 0, not left at 1
    assert (
        metric(observed, "signoff_time_to_decision_seconds_count", outcome="approved")
        == decided_before + 1
    )


def test_gates_that_time_out_are_counted_as_expired_or_escalated(observed: ServerProcess) -> None:
    samples = scrape(observed)
    expired_before = value(
        samples, "signoff_approvals_expired_total", gate="GATE_PUBLISH_BLOCK", result="expired"
    )
    escalated_before = value(
        samples, "signoff_approvals_expired_total", gate="GATE_FINANCE_APPROVAL", result="escalated"
    )
    decided_before = value(samples, "signoff_time_to_decision_seconds_count", outcome="expired")
    stubs = observed.stubs()
    # GATE_PUBLISH_BLOCK rejects on timeout: the action EXPIRES.
    _, blocked = start(
        stubs,
        proposed("adp_content.publish_block", pb.RISK_CLASS_NETWORK, confidence=0.9),
        input={"intent": "content.review", "message": "block post 9"},
    )
    assert list(blocked.action.gate_ids) == ["GATE_PUBLISH_BLOCK"]
    # GATE_FINANCE_APPROVAL escalates on timeout to GATE_FINANCE_DIRECTOR, which waits.
    _, refund = start(stubs, refund_action(f"tc_{uuid.uuid4().hex[:8]}"))
    assert list(refund.action.gate_ids) == ["GATE_FINANCE_APPROVAL"]

    def fired() -> bool:
        samples = scrape(observed)
        return (
            value(
                samples,
                "signoff_approvals_expired_total",
                gate="GATE_PUBLISH_BLOCK",
                result="expired",
            )
            == expired_before + 1
            and value(
                samples,
                "signoff_approvals_expired_total",
                gate="GATE_FINANCE_APPROVAL",
                result="escalated",
            )
            == escalated_before + 1
            and value(samples, "signoff_time_to_decision_seconds_count", outcome="expired")
            == decided_before + 1
            # The escalated action now waits on the directors' gate only.
            and value(samples, "signoff_approvals_waiting", gate="GATE_FINANCE_DIRECTOR") == 1
            and value(samples, "signoff_approvals_waiting", gate="GATE_FINANCE_APPROVAL") == 0
        )

    assert eventually(fired), scrape(observed)
    # The trail agrees: the blocked action expired.
    events = stubs.audit.ListEvents(
        audit_pb.ListEventsRequest(instance_id=blocked.action.instance_id)
    )
    assert events.events[-1].type == pb.EVENT_TYPE_ACTION_EXPIRED


def test_without_metrics_port_nothing_else_listens_and_warning_hides_rpc_lines(
    database_kind: str,
    make_database: Callable[[str], str],
    observed: ServerProcess,
    tmp_path: Path,
) -> None:
    assert observed.process is not None
    metrics_port = int(observed.metrics_url.rsplit(":", 1)[1].split("/")[0])
    http_port = int(observed.http_url.rsplit(":", 1)[1])
    assert listening_ports(observed.process.pid) == {observed.port, metrics_port, http_port}

    with ServerProcess(
        make_database(database_kind),
        tmp_path,
        "--log-level",
        "WARNING",
        "--http-port",
        "off",
        policy=EXAMPLE_POLICY,
    ) as quiet:
        assert quiet.metrics_url == ""
        assert quiet.process is not None
        assert listening_ports(quiet.process.pid) == {quiet.port}
        stubs = quiet.stubs()
        instance = stubs.execution.InvokeAgent(envelope()).instance
        with pytest.raises(grpc.RpcError):
            stubs.execution.GetInstance(execution_pb.GetInstanceRequest(instance_id="ins_nothere"))
        stubs.execution.CompleteInstance(
            execution_pb.CompleteInstanceRequest(instance_id=instance.instance_id)
        )
    lines = log_lines(quiet)
    assert all(line["level"] in ("WARNING", "ERROR") for line in lines), lines


# -- logs --------------------------------------------------------------------------------


def test_one_json_line_per_rpc_with_ids_code_duration_and_trace(observed: ServerProcess) -> None:
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    stubs = observed.stubs()
    request = envelope()
    instance = stubs.execution.InvokeAgent(request, metadata=(("traceparent", traceparent),))
    instance_id = instance.instance.instance_id
    with pytest.raises(grpc.RpcError):
        stubs.execution.GetInstance(execution_pb.GetInstanceRequest(instance_id="ins_nothere"))
    with pytest.raises(grpc.RpcError):
        observed.stubs("not-a-token").execution.GetInstance(
            execution_pb.GetInstanceRequest(instance_id=instance_id)
        )

    invoked = eventually(
        lambda: [
            line
            for line in rpc_lines(observed, f"{EXECUTION}/InvokeAgent")
            if line.get("request_id") == request.request_id
        ]
    )
    assert len(invoked) == 1, invoked
    line = invoked[0]
    assert line["level"] == "INFO"
    assert line["code"] == "OK"
    assert isinstance(line["duration_ms"], float | int) and line["duration_ms"] >= 0
    assert line["instance_id"] == instance_id  # from the response
    assert line["trace_id"] == trace_id  # from the traceparent header
    assert line["principal"] == "agt_support"
    assert line["peer"].startswith(("ipv4:", "ipv6:"))
    assert "time" in line and "message" in line

    # An error's status reaches the client before the line is written: wait for them.
    def get_instance_lines(instance_id: str, code: str) -> list[dict[str, Any]]:
        return [
            line
            for line in rpc_lines(observed, f"{EXECUTION}/GetInstance")
            if line.get("instance_id") == instance_id and line["code"] == code
        ]

    missing = eventually(lambda: get_instance_lines("ins_nothere", "NOT_FOUND"))
    assert missing and missing[-1]["error_reason"] == "INSTANCE_NOT_FOUND"
    refused = eventually(lambda: get_instance_lines(instance_id, "UNAUTHENTICATED"))
    assert refused and "principal" not in refused[-1]


def test_a_watch_the_client_cancels_is_logged_as_cancelled(observed: ServerProcess) -> None:
    """The line of a stream cancelled mid-flight is written after gRPC let go of the call."""
    stubs = observed.stubs()
    instance_id, answer = start(stubs, proposed("adp_mail.send", pb.RISK_CLASS_NETWORK, to="z"))
    approve(observed, answer.action_id)
    for _ in range(3):  # events are still queued when the client goes
        stream = stubs.execution.WatchInstance(
            execution_pb.WatchInstanceRequest(instance_id=instance_id), timeout=10
        )
        assert next(stream).event.revision == 1
        stream.cancel()

    def cancelled() -> list[dict[str, Any]]:
        return [
            line
            for line in rpc_lines(observed, f"{EXECUTION}/WatchInstance")
            if line.get("instance_id") == instance_id and line["code"] == "CANCELLED"
        ]

    assert eventually(lambda: len(cancelled()) == 3), cancelled()
    assert all(line["principal"] == "agt_support" for line in cancelled())
    # The server is still there.
    got = stubs.execution.GetInstance(execution_pb.GetInstanceRequest(instance_id=instance_id))
    assert got.instance.instance_id == instance_id


def test_one_json_line_per_committed_transition(observed: ServerProcess) -> None:
    stubs = observed.stubs()
    instance_id, answer = start(stubs, proposed("adp_mail.send", pb.RISK_CLASS_NETWORK, to="x"))
    approve(observed, answer.action_id)
    events = stubs.audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance_id)).events
    assert [e.type for e in events] == [
        pb.EVENT_TYPE_INSTANCE_CREATED,
        pb.EVENT_TYPE_ACTION_REQUESTED,
        pb.EVENT_TYPE_ACTION_DECIDED,
    ]

    def transitions() -> list[dict[str, Any]]:
        return [
            line
            for line in log_lines(observed)
            if line.get("logger") == "signoff.transitions" and line["instance_id"] == instance_id
        ]

    assert eventually(lambda: len(transitions()) == 3), transitions()
    for event, line in zip(events, transitions(), strict=True):
        assert line["level"] == "INFO"
        assert line["event"] == pb.EventType.Name(event.type).removeprefix("EVENT_TYPE_")
        assert line["revision"] == event.revision
        assert line["tenant_id"] == "tenant_acme_prod"
        assert line["instance_state"] == pb.InstanceState.Name(event.instance_state).removeprefix(
            "INSTANCE_STATE_"
        )
        assert line.get("action_id", "") == event.action_id
        assert line.get("actor", "") == event.actor
        assert "reason" not in line
    decided = transitions()[-1]
    assert decided["action_state"] == "APPROVED"
    assert decided["actor"] == APPROVER


def test_tokens_redacted_values_and_reasons_never_reach_the_log(observed: ServerProcess) -> None:
    email = f"jane.{uuid.uuid4().hex[:8]}@example.com"
    reason = f"customer said {uuid.uuid4().hex}"
    bad_token = f"bad-{uuid.uuid4().hex}"
    approver_token = mint(APPROVER, "human")
    stubs = observed.stubs()
    # data.lookup: the e-mail address is redacted before anything is stored.
    lookup = lookup_action(f"tc_{uuid.uuid4().hex[:8]}")
    lookup.params.update({"filter": f"owner = {email}"})
    _, answer = start(stubs, lookup, input={"intent": "data.lookup", "message": "find orders"})
    assert answer.outcome == pb.OUTCOME_APPROVED
    assert list(answer.controls.redaction_rules_active) == ["pii_email"]
    # A decision with a free-text reason, and a call with a bad token.
    _, waiting = start(stubs, proposed("adp_mail.send", pb.RISK_CLASS_NETWORK, to="y"))
    observed.stubs(approver_token).approval.SubmitDecision(
        approval_pb.SubmitDecisionRequest(
            action_id=waiting.action_id,
            verdict=pb.VERDICT_REJECT,
            reason=reason,
            request_id=f"dec_{uuid.uuid4().hex[:12]}",
        )
    )
    with pytest.raises(grpc.RpcError):
        observed.stubs(bad_token).execution.GetInstance(
            execution_pb.GetInstanceRequest(instance_id=waiting.action.instance_id)
        )

    assert eventually(
        lambda: any(line.get("action_id") == waiting.action_id for line in log_lines(observed))
    )
    text = observed.log_path.read_text()
    for secret in (AGENT_TOKEN, approver_token, bad_token, email, reason):
        assert secret not in text
    log_lines(observed)  # and still one JSON object per line
