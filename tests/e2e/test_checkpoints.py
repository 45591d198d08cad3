"""RecordCheckpoint through a real server on the example bundle, on both databases: the
refund workflow's decision checkpoints become DecisionRecords in the instance's chain,
beside the records of its gated actions, idempotently; and the chain still verifies, and
finds a checkpoint record changed behind signoff's back."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import json_format

from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from signoff_client import Signoff
from tests.support import (
    ServerProcess,
    Stubs,
    decide,
    envelope,
    error_info,
    field_violations,
    lookup_action,
    mint,
    refund_action,
)

SIGNOFF = Path(sys.executable).parent / "signoff"
EVIDENCE = ["kg:order:ord_881#snapshot_kg_2026_05_03_T0930", "tool:adp_policy.eval:tc_119"]


@pytest.fixture
def stubs(example_server: ServerProcess) -> Stubs:
    return example_server.stubs()


def auditor(stubs: Stubs) -> Stubs:
    return stubs.as_("auditor", "admin")


def invoke(stubs: Stubs) -> pb.Instance:
    return stubs.execution.InvokeAgent(envelope()).instance


def checkpoint(
    stubs: Stubs,
    instance_id: str,
    decision_id: str = "support.refund.eligibility",
    outcome: str = "eligible",
    evidence_refs: list[str] | None = None,
    outputs: dict[str, Any] | None = None,
) -> pb.DecisionRecord:
    request = execution_pb.RecordCheckpointRequest(
        instance_id=instance_id,
        decision_id=decision_id,
        outcome=outcome,
        evidence_refs=EVIDENCE if evidence_refs is None else evidence_refs,
    )
    request.outputs.update(
        {"eligible": True, "refund_amount_inr": 4200} if outputs is None else outputs
    )
    return stubs.execution.RecordCheckpoint(request).record


def records(stubs: Stubs, instance_id: str) -> list[pb.DecisionRecord]:
    """The instance's records in chain order (ListDecisionRecords lists newest first)."""
    found = auditor(stubs).audit.ListDecisionRecords(
        audit_pb.ListDecisionRecordsRequest(instance_id=instance_id)
    )
    return list(reversed(found.records))


def verify(stubs: Stubs, instance_id: str) -> audit_pb.VerifyChainResponse:
    return auditor(stubs).audit.VerifyChain(audit_pb.VerifyChainRequest(instance_id=instance_id))


def test_the_refund_workflow_records_its_checkpoints_in_chain_order(stubs: Stubs) -> None:
    instance = invoke(stubs)
    instance_id = instance.instance_id
    lookup = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=lookup_action())
    )
    assert lookup.outcome == pb.OUTCOME_APPROVED
    eligibility = checkpoint(stubs, instance_id)
    execute = checkpoint(
        stubs, instance_id, "support.refund.execute", "verified", outputs={"verified": True}
    )
    refund = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=refund_action())
    )
    assert refund.outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    decide(stubs, refund.action_id, "user_finance_lead_77")

    assert eligibility.decision_key == "support.refund.eligibility"
    assert eligibility.status == pb.DECISION_STATUS_DECIDED
    assert eligibility.checkpoint_outcome == "eligible"
    assert eligibility.outcome == pb.OUTCOME_UNSPECIFIED  # no action was asked about
    assert (eligibility.action_id, eligibility.tool, eligibility.action_sha256) == ("", "", "")
    assert list(eligibility.evidence_refs) == EVIDENCE
    assert json_format.MessageToDict(eligibility.outputs) == {
        "eligible": True,
        "refund_amount_inr": 4200,
    }
    assert eligibility.compiled_context_sha256 == instance.compiled_context.sha256
    assert eligibility.tenant_id == instance.tenant_id

    listed = records(stubs, instance_id)
    assert [(r.decision_key, r.checkpoint_outcome, r.tool) for r in listed] == [
        (listed[0].decision_key, "", "adp_orders.lookup"),
        ("support.refund.eligibility", "eligible", ""),
        ("support.refund.execute", "verified", ""),
        (listed[3].decision_key, "", "adp_payments.issue_refund"),
    ]
    assert [r.revision for r in listed] == sorted(r.revision for r in listed)
    assert listed[1] == eligibility
    assert {r.compiled_context_sha256 for r in listed} == {instance.compiled_context.sha256}

    events = (
        auditor(stubs).audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance_id)).events
    )
    written = [e for e in events if e.type == pb.EVENT_TYPE_CHECKPOINT_RECORDED]
    assert [(e.record_id, e.revision, e.action_id) for e in written] == [
        (eligibility.record_id, eligibility.revision, ""),
        (execute.record_id, execute.revision, ""),
    ]
    assert written[0].reason == "support.refund.eligibility DECIDED: eligible"
    assert written[0].record_sha256.startswith("sha256:")

    report = verify(stubs, instance_id)
    assert report.intact, report.problem
    assert report.records_checked == 4


def test_a_repeat_returns_the_same_record_and_a_different_one_is_refused(stubs: Stubs) -> None:
    instance_id = invoke(stubs).instance_id
    first = checkpoint(stubs, instance_id)
    revision = first.revision
    again = checkpoint(stubs, instance_id)
    assert again == first
    # The same outputs with the number written otherwise are the same outputs.
    assert (
        checkpoint(stubs, instance_id, outputs={"refund_amount_inr": 4200.0, "eligible": True})
        == first
    )

    for change in (
        {"outcome": "ineligible"},
        {"evidence_refs": EVIDENCE[:1]},
        {"outputs": {"eligible": False}},
    ):
        with pytest.raises(grpc.RpcError) as caught:
            checkpoint(stubs, instance_id, **change)
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS, change
        assert error_info(caught.value).reason == "IDEMPOTENCY_KEY_REUSED"
        assert error_info(caught.value).metadata["key"] == "decision_id"
    instance = stubs.execution.GetInstance(
        execution_pb.GetInstanceRequest(instance_id=instance_id)
    ).instance
    assert instance.revision == revision  # nothing more was written
    assert len(records(stubs, instance_id)) == 1


def test_an_ended_instance_records_no_checkpoint(stubs: Stubs) -> None:
    cancelled = invoke(stubs).instance_id
    stubs.execution.CancelInstance(execution_pb.CancelInstanceRequest(instance_id=cancelled))
    completed = invoke(stubs).instance_id
    stubs.execution.CompleteInstance(execution_pb.CompleteInstanceRequest(instance_id=completed))
    for instance_id in (cancelled, completed):
        with pytest.raises(grpc.RpcError) as caught:
            checkpoint(stubs, instance_id)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(caught.value).reason == "INSTANCE_NOT_ACTIVE"


def test_another_tenants_instance_is_not_found(stubs: Stubs, example_server: ServerProcess) -> None:
    instance_id = invoke(stubs).instance_id
    stranger = example_server.stubs(mint("agt_b", "agent", "tenant_other"))
    for target in (instance_id, "inst_missing"):
        with pytest.raises(grpc.RpcError) as caught:
            checkpoint(stranger, target)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(caught.value).reason == "INSTANCE_NOT_FOUND"
    # Humans do not record checkpoints: agents do.
    with pytest.raises(grpc.RpcError) as caught:
        checkpoint(stubs.as_("user_finance_lead_77"), instance_id)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_bad_input_names_each_field(stubs: Stubs) -> None:
    instance_id = invoke(stubs).instance_id
    request = execution_pb.RecordCheckpointRequest(
        decision_id="support refund/eligibility",
        evidence_refs=[""],
    )
    request.outputs.update({"amount": float("nan")})
    with pytest.raises(grpc.RpcError) as caught:
        stubs.execution.RecordCheckpoint(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    violations = field_violations(caught.value)
    assert {"instance_id", "decision_id", "outcome", "evidence_refs[0]"} <= set(violations)
    assert any(field.startswith("outputs") for field in violations), violations

    long = execution_pb.RecordCheckpointRequest(
        instance_id=instance_id, decision_id="d" * 129, outcome="x" * 129
    )
    with pytest.raises(grpc.RpcError) as caught:
        stubs.execution.RecordCheckpoint(long)
    assert set(field_violations(caught.value)) == {"decision_id", "outcome"}
    assert records(stubs, instance_id) == []


def audit_verify(server: ServerProcess, instance_id: str, path: Path) -> tuple[int, str]:
    """`signoff audit export` of the instance, then `signoff audit verify` of the file."""
    made = subprocess.run(
        [
            *(SIGNOFF, "audit", "export", "--database-url", server.database_url),
            *("--instance", instance_id, "--output", path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    checked = subprocess.run(
        [SIGNOFF, "audit", "verify", path], capture_output=True, text=True, timeout=120
    )
    assert checked.returncode in (0, 1), checked.stderr
    return checked.returncode, checked.stdout


def test_a_checkpoint_record_changed_in_the_database_breaks_the_chain(
    stubs: Stubs, example_server: ServerProcess, tmp_path: Path
) -> None:
    instance_id = invoke(stubs).instance_id
    record = checkpoint(stubs, instance_id)
    assert verify(stubs, instance_id).intact
    assert audit_verify(example_server, instance_id, tmp_path / "before.jsonl")[0] == 0

    engine = sa.create_engine(example_server.database_url)  # behind the server's back
    with engine.begin() as connection:
        (body,) = connection.execute(
            sa.text("SELECT body FROM decision_records WHERE record_id = :r"),
            {"r": record.record_id},
        ).one()
        body = json.loads(body) if isinstance(body, str) else body
        body["checkpoint_outcome"] = "ineligible"
        connection.execute(
            sa.text("UPDATE decision_records SET body = :b WHERE record_id = :r"),
            {"b": json.dumps(body), "r": record.record_id},
        )
    engine.dispose()

    report = verify(stubs, instance_id)
    assert not report.intact
    assert report.broken_revision == record.revision
    assert f"record {record.record_id} does not match the hash" in report.problem
    code, found = audit_verify(example_server, instance_id, tmp_path / "after.jsonl")
    assert code == 1
    assert record.record_id in found, found


def test_the_sdk_records_a_checkpoint(example_server: ServerProcess) -> None:
    with Signoff.connect(example_server.target) as client:
        instance = client.invoke_agent(
            json_format.MessageToDict(envelope(), preserving_proto_field_name=True)
        )
        record = client.record_checkpoint(
            instance.instance_id,
            "support.refund.eligibility",
            "eligible",
            evidence_refs=EVIDENCE,
            outputs={"eligible": True},
        )
        assert (record.decision_key, record.checkpoint_outcome) == (
            "support.refund.eligibility",
            "eligible",
        )
        again = client.record_checkpoint(
            instance.instance_id,
            "support.refund.eligibility",
            "eligible",
            evidence_refs=EVIDENCE,
            outputs={"eligible": True},
        )
        assert again.record_id == record.record_id
