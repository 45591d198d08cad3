"""WatchApprovals: a tenant's changes to waiting approvals, resumable by a cursor that never
skips or repeats a change, even with many concurrent writers."""

import queue
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from tests.support import ServerProcess, Stubs, envelope, error_info, lookup_action, refund_action

PATIENCE = 30


def inbox(server: ServerProcess, tenant: str, after: int = 0) -> "queue.Queue[object]":
    """Changes (and bookmark cursors, as ints) read on a thread."""
    items: queue.Queue[object] = queue.Queue()
    stream = server.as_("lead", tenant=tenant).approval.WatchApprovals(
        approval_pb.WatchApprovalsRequest(tenant_id=tenant, after_cursor=after), timeout=120
    )

    def read() -> None:
        try:
            for message in stream:
                items.put(message.change if message.HasField("change") else message.bookmark_cursor)
        except grpc.RpcError as error:
            items.put(error)

    threading.Thread(target=read, daemon=True).start()
    return items


def changes(items: "queue.Queue[object]", count: int) -> list[approval_pb.ApprovalChange]:
    found: list[approval_pb.ApprovalChange] = []
    while len(found) < count:
        item = items.get(timeout=PATIENCE)
        assert not isinstance(item, grpc.RpcError), item
        if isinstance(item, approval_pb.ApprovalChange):
            found.append(item)
    return found


def waiting_action(stubs: Stubs, instance_id: str, tool_call_id: str) -> str:
    return str(
        stubs.execution.RequestDecision(
            execution_pb.RequestDecisionRequest(
                instance_id=instance_id, action=refund_action(tool_call_id)
            )
        ).action_id
    )


def test_the_feed_follows_each_waiting_approval(server: ServerProcess) -> None:
    tenant = f"tenant_feed_{uuid.uuid4().hex[:8]}"
    agent = server.stubs()
    instance_id = agent.execution.InvokeAgent(envelope(tenant_id=tenant)).instance.instance_id
    items = inbox(server, tenant)
    first = waiting_action(agent, instance_id, "tc_1")
    second = waiting_action(agent, instance_id, "tc_2")
    agent.execution.RequestDecision(  # auto-approved: never waited, so not in the feed
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=lookup_action())
    )
    server.as_("lead").approval.SubmitDecision(
        approval_pb.SubmitDecisionRequest(
            action_id=first, verdict=pb.VERDICT_APPROVE, reason="ok", request_id=f"f-{first}"
        )
    )
    agent.execution.CancelInstance(execution_pb.CancelInstanceRequest(instance_id=instance_id))
    seen = changes(items, 4)
    assert [c.cursor for c in seen] == [1, 2, 3, 4]
    assert [(c.kind, c.action_id) for c in seen] == [
        (approval_pb.APPROVAL_CHANGE_KIND_REQUESTED, first),
        (approval_pb.APPROVAL_CHANGE_KIND_REQUESTED, second),
        (approval_pb.APPROVAL_CHANGE_KIND_DECIDED, first),
        (approval_pb.APPROVAL_CHANGE_KIND_CANCELLED, second),
    ]
    assert seen[2].actor == "lead" and seen[2].action_state == pb.ACTION_STATE_APPROVED
    while (item := items.get(timeout=PATIENCE)) != 4:  # idle: a bookmark at the newest cursor
        assert isinstance(item, int | approval_pb.ApprovalChange), item
    resumed = inbox(server, tenant, after=2)
    assert [c.cursor for c in changes(resumed, 2)] == [3, 4]


def test_concurrent_writers_never_make_the_feed_skip_or_repeat(server: ServerProcess) -> None:
    tenant = f"tenant_busy_{uuid.uuid4().hex[:8]}"
    agents = [server.stubs() for _ in range(4)]
    instances = [
        agents[0]
        .execution.InvokeAgent(envelope(tenant_id=tenant, runtime={"max_tool_calls": 100}))
        .instance.instance_id
        for _ in range(8)
    ]
    items = inbox(server, tenant)
    writes = 80

    def write(i: int) -> None:
        waiting_action(agents[i % 4], instances[i % 8], f"tc_{i}")

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, range(writes)))
    # Half-way, a second reader resumes from where the first stood.
    first_half = changes(items, writes // 2)
    resumed = inbox(server, tenant, after=first_half[-1].cursor)
    rest = changes(resumed, writes - writes // 2)
    cursors = [c.cursor for c in first_half + rest]
    assert cursors == list(range(1, writes + 1))
    assert len({c.action_id for c in first_half + rest}) == writes


def test_the_feed_is_tenant_scoped(server: ServerProcess) -> None:
    stranger = server.as_("lead_b", tenant="tenant_other")
    with pytest.raises(grpc.RpcError) as denied:
        next(
            stranger.approval.WatchApprovals(
                approval_pb.WatchApprovalsRequest(tenant_id="tenant_acme_prod"), timeout=10
            )
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(denied.value).reason == "TENANT_NOT_ALLOWED"
    with pytest.raises(grpc.RpcError) as unnamed:
        next(
            server.as_("ops").approval.WatchApprovals(
                approval_pb.WatchApprovalsRequest(), timeout=10
            )
        )
    assert unnamed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as ahead:
        next(
            server.as_("ops").approval.WatchApprovals(
                approval_pb.WatchApprovalsRequest(tenant_id="tenant_empty", after_cursor=5),
                timeout=10,
            )
        )
    assert error_info(ahead.value).reason == "CURSOR_OUT_OF_RANGE"
