"""Changes made behind signoff's back are found. Each case edits the database directly (or
an export file) on SQLite and PostgreSQL, then checks that VerifyChain (gRPC) and the CLI
(`audit export` + `audit verify`) both report it, naming the instance and the revision or
the action or record; where the change would let a decision through, the service refuses
with STATE_TAMPERED. `pytest -s` prints the matrix of what was found where."""

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from signoff.domain.chain import event_hash, heads_digest
from signoff.store.schema import events as events_table
from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from tests.support import (
    ServerProcess,
    decide,
    envelope,
    error_info,
    lookup_action,
    refund_action,
)

SIGNOFF = Path(sys.executable).parent / "signoff"
MIGRATION_0010 = (
    Path(__file__).parents[2] / "server/signoff/store/migrations/versions/0010_sealed_state.py"
)

# (case, database) -> (VerifyChain, CLI, service) as found
MATRIX: dict[tuple[str, str], tuple[str, str, str]] = {}


@pytest.fixture(scope="module")
def server(
    database_kind: str,
    make_database: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    """A server of this module's own: the rows tampered with here would make other tests'
    pending-approval listings fail closed."""
    with ServerProcess(make_database(database_kind), tmp_path_factory.mktemp("logs")) as process:
        yield process


@pytest.fixture(scope="module", autouse=True)
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    if not MATRIX:
        return
    lines = [
        f"{'case':44} {'database':10} {'VerifyChain':22} {'CLI':22} service",
        *(
            f"{case:44} {kind:10} {grpc_found:22} {cli_found:22} {service}"
            for (case, kind), (grpc_found, cli_found, service) in sorted(MATRIX.items())
        ),
    ]
    text = "\n".join(lines)
    (tmp_path_factory.getbasetemp() / "tamper-matrix.txt").write_text(text + "\n")
    print("\n" + text)


@dataclass
class Trail:
    """An instance with an action policy approved (revision 2, a record), one a human
    rejected (revisions 3 and 4, a record) and one that waits (revision 5)."""

    instance_id: str
    approved: str
    rejected: str
    waiting: str
    records: dict[str, str] = field(default_factory=dict)  # action id -> record id


def ask(server: ServerProcess, instance_id: str, action: pb.ProposedAction) -> Any:
    return server.stubs().execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=action)
    )


def trail(server: ServerProcess) -> Trail:
    agent = server.stubs()
    instance_id = agent.execution.InvokeAgent(envelope()).instance.instance_id
    approved = ask(server, instance_id, lookup_action())
    rejected = ask(server, instance_id, refund_action("tc_121"))
    decide(server, rejected.action_id, "lead", pb.VERDICT_REJECT, reason="not eligible")
    waiting = ask(server, instance_id, refund_action("tc_122", amount=4300))
    assert waiting.outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    records = agent.audit.ListDecisionRecords(
        audit_pb.ListDecisionRecordsRequest(instance_id=instance_id)
    ).records
    return Trail(
        instance_id,
        approved.action_id,
        rejected.action_id,
        waiting.action_id,
        {r.action_id: r.record_id for r in records},
    )


def completed(server: ServerProcess) -> str:
    """An instance that was created and completed (revisions 1 and 2)."""
    agent = server.stubs()
    instance_id = agent.execution.InvokeAgent(envelope()).instance.instance_id
    agent.execution.CompleteInstance(execution_pb.CompleteInstanceRequest(instance_id=instance_id))
    return instance_id


def sql(server: ServerProcess, *statements: str, **params: object) -> None:
    engine = sa.create_engine(server.database_url)  # behind the server's back
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(sa.text(statement), params)
    engine.dispose()


def query(server: ServerProcess, statement: str, **params: object) -> list[Any]:
    engine = sa.create_engine(server.database_url)
    with engine.begin() as connection:
        rows = list(connection.execute(sa.text(statement), params))
    engine.dispose()
    return rows


def document(value: Any) -> Any:
    """A JSON column as read with plain SQL: text on SQLite, parsed on PostgreSQL."""
    return json.loads(value) if isinstance(value, str) else value


def edit_document(
    server: ServerProcess,
    table: str,
    column: str,
    key: str,
    ident: str,
    change: Callable[[Any], Any],
) -> None:
    """Rewrites a JSON column of one row (`key` = `ident`) with `change`."""
    where = f"FROM {table} WHERE {key} = :k"
    (value,) = query(server, f"SELECT {column} {where}", k=ident)
    new = json.dumps(change(document(value[0])))
    sql(server, f"UPDATE {table} SET {column} = :v WHERE {key} = :k", k=ident, v=new)


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SIGNOFF, *args], capture_output=True, text=True, timeout=120)


def export(server: ServerProcess, path: Path, *scope: str) -> list[dict[str, Any]]:
    made = run("audit", "export", "--database-url", server.database_url, *scope, "--output", path)
    assert made.returncode == 0, made.stderr
    return [json.loads(line) for line in path.read_text().splitlines()]


def write(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))
    return path


def verify_file(path: Path, *extra: str | Path) -> str:
    checked = run("audit", "verify", path, *extra)
    assert checked.returncode in (0, 1), checked.stderr
    return checked.stdout


def refused(call: Callable[[], object]) -> str:
    """The reason the service refused `call` with (it must refuse)."""
    with pytest.raises(grpc.RpcError) as error:
        call()
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    return error_info(error.value).reason


@dataclass
class Expected:
    """What must be reported: (instance, revision, part of the problem) each."""

    breaks: list[tuple[str, int, str]]
    # Calls the service must refuse with STATE_TAMPERED now.
    refusals: dict[str, Callable[[], object]] = field(default_factory=dict)


# -- database cases -------------------------------------------------------------------------


def modify_event(server: ServerProcess, t: Trail) -> Expected:
    sql(
        server,
        "UPDATE events SET reason = 'approved by nobody' WHERE instance_id = :i AND revision = 4",
        i=t.instance_id,
    )
    return Expected([(t.instance_id, 4, "content does not match its hash")])


def delete_event(server: ServerProcess, t: Trail) -> Expected:
    sql(server, "DELETE FROM events WHERE instance_id = :i AND revision = 3", i=t.instance_id)
    return Expected([(t.instance_id, 3, "events missing")])


def insert_event(server: ServerProcess, t: Trail) -> Expected:
    """A forged copy of revision 2 slipped in as revision 3; the later ones move up."""
    columns = ", ".join(c.name for c in events_table.c)
    copied = ", ".join("3" if c.name == "revision" else c.name for c in events_table.c)
    sql(
        server,
        "UPDATE events SET revision = revision + 1000 WHERE instance_id = :i AND revision >= 3",
        "UPDATE events SET revision = revision - 999 WHERE instance_id = :i AND revision > 1000",
        f"INSERT INTO events ({columns}) SELECT {copied} FROM events "
        "WHERE instance_id = :i AND revision = 2",
        "UPDATE instances SET revision = revision + 1 WHERE instance_id = :i",
        i=t.instance_id,
    )
    return Expected([(t.instance_id, 3, "prev_hash does not name the previous event")])


def reorder_events(server: ServerProcess, t: Trail) -> Expected:
    sql(
        server,
        "UPDATE events SET revision = 1002 WHERE instance_id = :i AND revision = 2",
        "UPDATE events SET revision = 2 WHERE instance_id = :i AND revision = 3",
        "UPDATE events SET revision = 3 WHERE instance_id = :i AND revision = 1002",
        i=t.instance_id,
    )
    return Expected([(t.instance_id, 2, "prev_hash does not name the previous event")])


def delete_record(server: ServerProcess, t: Trail) -> Expected:
    record_id = t.records[t.rejected]
    sql(server, "DELETE FROM decision_records WHERE record_id = :r", r=record_id)
    return Expected([(t.instance_id, 4, f"record {record_id} that event 4 wrote is missing")])


def edit_body(server: ServerProcess, record_id: str, change: Callable[[Any], Any]) -> None:
    edit_document(server, "decision_records", "body", "record_id", record_id, change)


def forged(body: dict[str, Any], instance_id: str) -> dict[str, Any]:
    """A REJECTED record rewritten as approved by usr_forged."""
    approvals = [{**a, "approver": "usr_forged", "verdict": "APPROVE"} for a in body["approvals"]]
    return {**body, "instance_id": instance_id, "outcome": "APPROVED", "approvals": approvals}


def move_record(server: ServerProcess, t: Trail) -> Expected:
    """The rejected record moved to another instance and rewritten as an approval."""
    record_id = t.records[t.rejected]
    other = completed(server)
    edit_body(server, record_id, lambda b: forged(b, other))
    sql(
        server,
        "UPDATE decision_records SET instance_id = :j WHERE record_id = :r",
        r=record_id,
        j=other,
    )
    return Expected(
        [
            (t.instance_id, 4, f"record {record_id} that event 4 wrote is missing"),
            (other, 0, f"record {record_id} is stored here but no event names it"),
        ]
    )


def edit_record(server: ServerProcess, t: Trail) -> Expected:
    record_id = t.records[t.rejected]
    edit_body(server, record_id, lambda b: forged(b, t.instance_id))
    return Expected([(t.instance_id, 4, f"record {record_id} does not match the hash")])


def edit_approved_record(server: ServerProcess, t: Trail) -> Expected:
    """The record of an approved action edited before its execution is reported: reporting
    would store it again under a new hash, so the report is refused."""
    record_id = t.records[t.approved]
    edit_body(server, record_id, lambda b: {**b, "rule_ids": ["approved_by_hand"]})
    grant = ask(server, t.instance_id, lookup_action()).grant_token
    report = execution_pb.ReportExecutionRequest(
        action_id=t.approved,
        result=execution_pb.EXECUTION_RESULT_SUCCEEDED,
        evidence_ref="tool:adp_orders.lookup:tc_117",
        grant_token=grant,
    )
    return Expected(
        [(t.instance_id, 2, f"record {record_id} does not match the hash")],
        {"ReportExecution": lambda: server.stubs().execution.ReportExecution(report)},
    )


def approve_action(server: ServerProcess, t: Trail) -> Expected:
    """The waiting action flipped to APPROVED: the agent's repeat must not get a grant."""
    sql(server, "UPDATE actions SET state = 'APPROVED' WHERE action_id = :a", a=t.waiting)
    again = refund_action("tc_122", amount=4300)
    return Expected(
        [(t.instance_id, 5, f"action {t.waiting}: it is APPROVED but its chain says")],
        {"RequestDecision": lambda: ask(server, t.instance_id, again)},
    )


def edit_params(server: ServerProcess, t: Trail) -> Expected:
    """The waiting action's params changed (its action_sha256 left alone)."""
    change = lambda params: {**params, "amount": 999999}  # noqa: E731
    edit_document(server, "actions", "params", "action_id", t.waiting, change)
    inbox = server.as_("lead").approval
    return Expected(
        [(t.instance_id, 5, f"action {t.waiting}: its stored state")],
        {
            "ListPendingApprovals": lambda: inbox.ListPendingApprovals(
                approval_pb.ListPendingApprovalsRequest(page_size=1000)
            ),
            "SubmitDecision": lambda: decide(server, t.waiting, "lead"),
        },
    )


def edit_gates(server: ServerProcess, t: Trail) -> Expected:
    """The waiting action's gate counted as already approved."""
    change = lambda gates: [{**g, "approvals": g["quorum"]} for g in gates]  # noqa: E731
    edit_document(server, "actions", "gates", "action_id", t.waiting, change)
    return Expected(
        [(t.instance_id, 5, f"action {t.waiting}: its stored state")],
        {"SubmitDecision": lambda: decide(server, t.waiting, "lead")},
    )


def reopen_instance(server: ServerProcess, t: Trail) -> Expected:
    """A completed instance set back to RUNNING must not take new actions."""
    other = completed(server)
    sql(server, "UPDATE instances SET state = 'RUNNING' WHERE instance_id = :j", j=other)
    return Expected(
        [(other, 2, "the instance is RUNNING but its chain says COMPLETED")],
        {"RequestDecision": lambda: ask(server, other, refund_action("tc_900"))},
    )


def edit_envelope(server: ServerProcess, t: Trail) -> Expected:
    """The envelope's user changed (separation of duties, budgets are read from it)."""
    change = lambda body: {**body, "user": {"user_id": "lead"}}  # noqa: E731
    edit_document(server, "instances", "envelope", "instance_id", t.instance_id, change)
    return Expected(
        [(t.instance_id, 5, "the instance's stored state")],
        {"RequestDecision": lambda: ask(server, t.instance_id, refund_action("tc_901"))},
    )


def spend_less(server: ServerProcess, t: Trail) -> Expected:
    """The instance's tool-call count lowered (the budget it is checked against)."""
    sql(server, "UPDATE instances SET tool_calls_used = 0 WHERE instance_id = :i", i=t.instance_id)
    return Expected(
        [(t.instance_id, 5, "the instance's stored state")],
        {"RequestDecision": lambda: ask(server, t.instance_id, refund_action("tc_902"))},
    )


def spend_more(server: ServerProcess, t: Trail) -> Expected:
    """The instance's cost totals lowered (what runtime.max_cost_cents is checked against)."""
    sql(
        server,
        "UPDATE instances SET cost_spent_cents = -100000 WHERE instance_id = :i",
        i=t.instance_id,
    )
    return Expected(
        [(t.instance_id, 5, "the instance's stored state")],
        {"RequestDecision": lambda: ask(server, t.instance_id, refund_action("tc_903"))},
    )


DATABASE_CASES = {
    "event modified": modify_event,
    "event deleted": delete_event,
    "event inserted": insert_event,
    "events reordered": reorder_events,
    "record deleted": delete_record,
    "record moved to another instance and edited": move_record,
    "record edited": edit_record,
    "approved record edited, then execution reported": edit_approved_record,
    "action state set to APPROVED": approve_action,
    "action params edited": edit_params,
    "action gate state edited": edit_gates,
    "instance COMPLETED set back to RUNNING": reopen_instance,
    "instance envelope edited": edit_envelope,
    "instance tool calls used edited": spend_less,
    "instance cost totals edited": spend_more,
}


@pytest.mark.parametrize("case", DATABASE_CASES)
def test_a_change_to_the_database_is_found(
    server: ServerProcess, database_kind: str, tmp_path: Path, case: str
) -> None:
    t = trail(server)
    assert (
        server.stubs()
        .audit.VerifyChain(audit_pb.VerifyChainRequest(instance_id=t.instance_id))
        .intact
    )
    expected = DATABASE_CASES[case](server, t)

    # Over gRPC: every expected break, in the instance it concerns.
    grpc_found = []
    for instance_id, revision, problem in expected.breaks:
        report = server.stubs().audit.VerifyChain(
            audit_pb.VerifyChainRequest(instance_id=instance_id)
        )
        assert not report.intact
        lines = report.problem.splitlines()
        named = [report.broken_revision == revision and problem in lines[0]] + [
            line.startswith(f"revision {revision}: ") and problem in line for line in lines[1:]
        ]
        assert any(named), (revision, problem, report)
        grpc_found.append(f"rev {revision}")

    # With the CLI: an export of the instance, verified offline.
    cli_found = []
    for instance_id, revision, problem in expected.breaks:
        path = tmp_path / f"{instance_id}.jsonl"
        export(server, path, "--instance", instance_id)
        out = verify_file(path)
        prefix = f"BROKEN: instance {instance_id} at revision {revision}: "
        assert any(line.startswith(prefix) and problem in line for line in out.splitlines()), (
            prefix,
            problem,
            out,
        )
        cli_found.append(f"rev {revision}")

    service = []
    for name, call in expected.refusals.items():
        assert refused(call) == "STATE_TAMPERED", name
        service.append(f"{name}: STATE_TAMPERED")
    MATRIX[(case, database_kind)] = (
        "found " + ", ".join(grpc_found),
        "found " + ", ".join(cli_found),
        "; ".join(service) or "-",
    )


# -- export cases ----------------------------------------------------------------------------


def two_instances(server: ServerProcess, path: Path) -> tuple[Trail, Trail, list[dict[str, Any]]]:
    since = datetime.now(UTC).isoformat()
    first, second = trail(server), trail(server)
    lines = export(server, path, "--since", since)
    assert verify_file(path).startswith("intact: 2 instances, 10 events")
    return first, second, lines


def without_instance(lines: list[dict[str, Any]], instance_id: str) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("instance_id") != instance_id]


def truncated(lines: list[dict[str, Any]], first: Trail, second: Trail) -> list[dict[str, Any]]:
    """Cut before the manifest and the second instance's records."""
    return lines[: -1 - len(second.records)]


def dropped(lines: list[dict[str, Any]], first: Trail, second: Trail) -> list[dict[str, Any]]:
    return without_instance(lines, first.instance_id)


def thinned(lines: list[dict[str, Any]], first: Trail, second: Trail) -> list[dict[str, Any]]:
    """The rejected action's record line deleted."""
    record_id = first.records[first.rejected]
    return [
        line for line in lines if (line["kind"], line.get("record_id")) != ("record", record_id)
    ]


EXPORT_CASES = {
    "export truncated": (truncated, "BROKEN: export at revision 0: no manifest", "no manifest"),
    "export: instance dropped": (
        dropped,
        "BROKEN: instance {first} at revision 0: in the manifest, but missing",
        "instance named (manifest)",
    ),
    "export: record line deleted": (
        thinned,
        "BROKEN: instance {first} at revision 4: record {record} that event 4 wrote is missing",
        "rev 4, record named",
    ),
}


@pytest.mark.parametrize("case", EXPORT_CASES)
def test_a_change_to_an_export_is_found(
    server: ServerProcess, database_kind: str, tmp_path: Path, case: str
) -> None:
    first, second, lines = two_instances(server, tmp_path / "trail.jsonl")
    change, expected, found = EXPORT_CASES[case]
    out = verify_file(write(tmp_path / "changed.jsonl", change(lines, first, second)))
    record = first.records[first.rejected]
    assert expected.format(first=first.instance_id, record=record) in out, out
    MATRIX[(case, database_kind)] = ("-", f"found: {found}", "-")


def test_an_instance_dropped_with_its_manifest_rewritten_is_found_against_an_anchor(
    server: ServerProcess, database_kind: str, tmp_path: Path
) -> None:
    """An unkeyed manifest can be rewritten to match; an anchor kept elsewhere cannot."""
    first, _, lines = two_instances(server, tmp_path / "trail.jsonl")
    anchor = tmp_path / "anchor.json"
    taken = run("audit", "anchor", "--database-url", server.database_url, "--output", anchor)
    assert taken.returncode == 0, taken.stderr
    assert "digest sha256:" in taken.stderr

    kept = without_instance(lines, first.instance_id)
    manifest = kept[-1]
    manifest["instances"] = [
        e for e in manifest["instances"] if e["instance_id"] != first.instance_id
    ]
    manifest["count"] = len(manifest["instances"])
    manifest["events"] = sum(e["events"] for e in manifest["instances"])
    manifest["digest"] = heads_digest(manifest["instances"])
    rewritten = write(tmp_path / "rewritten.jsonl", kept)
    assert verify_file(rewritten).startswith("intact: 1 instances, 5 events")  # unkeyed

    out = verify_file(rewritten, "--against", anchor)
    assert (
        f"BROKEN: instance {first.instance_id} at revision 5: the anchored instance is missing"
        in out
    )
    assert verify_file(tmp_path / "trail.jsonl", "--against", anchor).startswith("intact")
    MATRIX[("export: instance dropped, manifest rewritten", database_kind)] = (
        "-",
        "found with --against",
        "-",
    )


def test_a_chain_rewritten_end_to_end_is_found_only_against_an_anchor(
    server: ServerProcess, database_kind: str, tmp_path: Path
) -> None:
    """A database owner who recomputes every hash after an edit leaves a chain that verifies
    on its own: an anchor taken before finds it, and says where it no longer extends."""
    t = trail(server)
    anchor = tmp_path / "anchor.json"
    assert (
        run("audit", "anchor", "--database-url", server.database_url, "--output", anchor).returncode
        == 0
    )

    def approve(line: dict[str, Any]) -> None:
        if line["revision"] == 4:
            line["reason"] = "approved, in the end"

    rehash(server, t.instance_id, tmp_path / "before.jsonl", approve, "reason = :reason")

    report = server.stubs().audit.VerifyChain(
        audit_pb.VerifyChainRequest(instance_id=t.instance_id)
    )
    assert report.intact  # what an unkeyed chain cannot show on its own
    after = tmp_path / "after.jsonl"
    export(server, after, "--instance", t.instance_id)
    assert verify_file(after).startswith("intact")
    out = verify_file(after, "--against", anchor)
    assert f"BROKEN: instance {t.instance_id} at revision 5: the chain no longer extends" in out
    # The same, on the database directly (its other instances were tampered with here too).
    checked = run("audit", "verify", "--database-url", server.database_url, "--against", anchor)
    assert checked.returncode == 1
    assert f"BROKEN: instance {t.instance_id} at revision 5: the chain no longer" in checked.stdout
    MATRIX[("chain rewritten end to end in the database", database_kind)] = (
        "not found (by design)",
        "found with --against",
        "-",
    )


def rehash(
    server: ServerProcess,
    instance_id: str,
    path: Path,
    change: Callable[[dict[str, Any]], None],
    assignments: str,
) -> None:
    """What a database owner can do: `change` each event of the instance (and set the
    columns of `assignments`, from the changed event's fields), then recompute every hash
    and the instance's chain head."""
    previous = ""
    for line in export(server, path, "--instance", instance_id):
        if line["kind"] != "event":
            continue
        change(line)
        line["prev_hash"] = previous
        line["hash"] = previous = event_hash(line)
        sql(
            server,
            f"UPDATE events SET {assignments}, prev_hash = :prev_hash, hash = :hash "
            "WHERE instance_id = :instance_id AND revision = :revision",
            **line,
        )
    sql(
        server,
        "UPDATE instances SET chain_head = :h WHERE instance_id = :i",
        h=previous,
        i=instance_id,
    )


def written_before_seals(server: ServerProcess, instance_id: str, path: Path) -> None:
    """Makes the instance's rows what migration 0010 leaves of rows written before it: events
    without seals (hashed without them), actions pointed at their newest event."""
    spec = importlib.util.spec_from_file_location("migration_0010", MIGRATION_0010)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)

    def unseal(line: dict[str, Any]) -> None:
        line.pop("instance_seal"), line.pop("action_seal", None)

    rehash(server, instance_id, path, unseal, "instance_seal = '', action_seal = ''")
    sql(
        server,
        "UPDATE actions SET event_revision = 0 WHERE instance_id = :i",
        migration.POINT_ACTIONS,
        i=instance_id,
    )


def test_rows_written_before_seals_verify_and_their_state_is_still_checked(
    server: ServerProcess, tmp_path: Path
) -> None:
    t = trail(server)
    written_before_seals(server, t.instance_id, tmp_path / "before.jsonl")
    audit = server.stubs().audit
    assert audit.VerifyChain(audit_pb.VerifyChainRequest(instance_id=t.instance_id)).intact
    export(server, tmp_path / "legacy.jsonl", "--instance", t.instance_id)
    assert verify_file(tmp_path / "legacy.jsonl").startswith("intact: 1 instances, 5 events")

    # Without a seal, the state is still checked against the event.
    flip = "UPDATE actions SET state = :s WHERE action_id = :a"
    sql(server, flip, s="APPROVED", a=t.waiting)
    again = refund_action("tc_122", amount=4300)
    assert refused(lambda: ask(server, t.instance_id, again)) == "STATE_TAMPERED"
    sql(server, flip, s="WAITING_FOR_HUMAN", a=t.waiting)

    # The next change seals the instance and the action.
    assert decide(server, t.waiting, "lead").action.state == pb.ACTION_STATE_APPROVED
    report = audit.VerifyChain(audit_pb.VerifyChainRequest(instance_id=t.instance_id))
    assert report.intact and report.events_checked == 6
    sql(server, "UPDATE actions SET decided_by = 'mallory' WHERE action_id = :a", a=t.waiting)
    assert refused(lambda: ask(server, t.instance_id, again)) == "STATE_TAMPERED"
