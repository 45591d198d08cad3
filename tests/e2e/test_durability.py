"""Kill -9 while actions wait; restart on the same database; nothing is lost."""

import signal
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from tests.conftest import DATABASE_KINDS
from tests.support import ServerProcess, decide, envelope, error_info, events, refund_action


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_waiting_actions_survive_sigkill(
    kind: str, make_database: Callable[[str], str], tmp_path: Path
) -> None:
    url = make_database(kind)
    first = ServerProcess(url, tmp_path).start()
    stubs = first.stubs()
    instance_id = stubs.execution.InvokeAgent(envelope()).instance.instance_id
    waiting = [
        stubs.execution.RequestDecision(
            execution_pb.RequestDecisionRequest(
                instance_id=instance_id, action=refund_action(f"tc_{i}")
            )
        ).action_id
        for i in range(3)
    ]
    stream = stubs.execution.WatchInstance(
        execution_pb.WatchInstanceRequest(instance_id=instance_id), timeout=30
    )
    last_seen = [next(stream).event.revision for _ in range(4)][-1]
    first.stop(signal.SIGKILL)

    with ServerProcess(url, tmp_path) as second:
        stubs = second.stubs()
        lead = second.as_("lead")
        pending = lead.approval.ListPendingApprovals(
            approval_pb.ListPendingApprovalsRequest()
        ).actions
        assert [a.action_id for a in pending] == waiting
        instance = stubs.execution.GetInstance(
            execution_pb.GetInstanceRequest(instance_id=instance_id)
        ).instance
        assert instance.state == pb.INSTANCE_STATE_WAITING_FOR_HUMAN and instance.revision == 4
        for action_id in waiting:
            decide(second, action_id, "lead", reason="after restart")
        stubs.execution.CompleteInstance(
            execution_pb.CompleteInstanceRequest(instance_id=instance_id)
        )

        resumed = stubs.execution.WatchInstance(
            execution_pb.WatchInstanceRequest(instance_id=instance_id, after_revision=last_seen),
            timeout=30,
        )
        missed = list(events(resumed))
        assert [e.revision for e in missed] == [5, 6, 7, 8]
        assert [e.type for e in missed] == [pb.EVENT_TYPE_ACTION_DECIDED] * 3 + [
            pb.EVENT_TYPE_INSTANCE_COMPLETED
        ]
        trail = stubs.audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance_id)).events
        assert [e.revision for e in trail] == list(range(1, 9))
        records = stubs.audit.ListDecisionRecords(
            audit_pb.ListDecisionRecordsRequest(instance_id=instance_id)
        ).records
        assert sorted(r.action_id for r in records) == sorted(waiting)


def test_ctrl_c_shuts_down_gracefully(make_database: Callable[[str], str], tmp_path: Path) -> None:
    url = make_database("sqlite")
    server = ServerProcess(url, tmp_path).start()
    stubs = server.stubs()
    instance_id = stubs.execution.InvokeAgent(envelope()).instance.instance_id
    stream = stubs.execution.WatchInstance(
        execution_pb.WatchInstanceRequest(instance_id=instance_id), timeout=30
    )
    assert next(stream).event.revision == 1
    server.process.send_signal(signal.SIGINT)  # type: ignore[union-attr]
    assert server.process.wait(30) == 0  # type: ignore[union-attr]
    with pytest.raises(grpc.RpcError) as ended:
        for _ in stream:  # bookmarks may still be buffered
            pass
    # The open stream ends with an error, never OK (OK would mean the instance is over),
    # and says why, so the client resumes elsewhere.
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(ended.value).reason == "SERVER_SHUTTING_DOWN"
    with ServerProcess(url, tmp_path) as again:
        instance = (
            again.stubs()
            .execution.GetInstance(execution_pb.GetInstanceRequest(instance_id=instance_id))
            .instance
        )
        assert instance.state == pb.INSTANCE_STATE_RUNNING
