"""The Python SDK (clients/python/signoff_client) against real signoff server processes.

An agent asks with request_decision; another client (a plain grpcio stub, as an approver's
tool would) decides; the SDK learns the outcome through WatchInstance, including across a
server restart. Every approval carries its single-use execution grant, which the agent
spends with consume_grant or report_execution.
"""

import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import policy_service_pb2 as policy_pb
from signoff.v1 import types_pb2 as pb
from signoff_client import (
    APPROVED,
    WAITING_FOR_HUMAN,
    ActionRejected,
    AlreadyDecided,
    AsyncSignoff,
    Backoff,
    DecisionTimeout,
    ErrorReason,
    InstanceTerminated,
    Signoff,
    SignoffError,
    proposed_action,
)
from tests import support
from tests.support import ServerProcess, Stubs, envelope, mint

REFUND = {"order_id": "ord_881", "amount": 4200, "currency": "INR"}
EVIDENCE = ["kg:order:ord_881#snapshot_kg_2026_05_03_T0930"]
FAST = Backoff(initial=0.05, maximum=0.5)
PATIENCE = 60.0  # seconds a test waits for the server before it fails


def refund(tool_call_id: str = "tc_121") -> dict[str, Any]:
    """request_decision keyword arguments for the reference refund (DESTRUCTIVE: waits)."""
    return dict(
        tool_call_id=tool_call_id,
        tool="adp_payments.issue_refund",
        params=REFUND,
        risk_class="DESTRUCTIVE",
        evidence_refs=EVIDENCE,
    )


def envelope_dict() -> dict[str, Any]:
    return json_format.MessageToDict(envelope(), preserving_proto_field_name=True)


def wait_until(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not check():
        assert time.monotonic() < deadline, "the server never reached the expected state"
        time.sleep(0.05)


def waiting_action(stubs: Stubs, instance_id: str) -> pb.Action:
    """The action that waits on an instance, once RequestDecision has committed."""
    found: list[pb.Action] = []

    def check() -> bool:
        pending = stubs.as_("inbox").approval.ListPendingApprovals(
            approval_pb.ListPendingApprovalsRequest(tenant_id="tenant_acme_prod", page_size=1000)
        )
        found[:] = [a for a in pending.actions if a.instance_id == instance_id]
        return bool(found)

    wait_until(check)
    return found[0]


def decide(stubs: Stubs, action_id: str, verdict: int, approver: str, reason: str) -> None:
    support.decide(stubs, action_id, approver, verdict, reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def sync_client(server: ServerProcess) -> Iterator[Signoff]:
    with Signoff.connect(server.target, backoff=FAST) as client:
        yield client


# ---- asyncio client ----------------------------------------------------------------------


async def test_read_only_is_approved_at_once_with_params(server: ServerProcess) -> None:
    async with AsyncSignoff.connect(server.target) as signoff:
        instance = await signoff.invoke_agent(envelope_dict())
        decision = await signoff.request_decision(
            instance.instance_id,
            tool_call_id="tc_117",
            tool="adp_orders.lookup",
            params={"order_id": "ord_881", "limit": 3, "ratio": 0.5},
            risk_class=pb.RISK_CLASS_READ_ONLY,
            timeout=30,
        )
    assert decision.outcome == APPROVED
    assert decision.params == {"order_id": "ord_881", "limit": 3, "ratio": 0.5}
    assert isinstance(decision.params["limit"], int)  # whole numbers come back as ints
    assert decision.approver == "policy"
    assert decision.action_sha256.startswith("sha256:")
    assert decision.action is not None and decision.action.state == pb.ACTION_STATE_APPROVED
    assert decision.action_id == decision.action.action_id
    assert decision.grant_token.startswith("grt_")
    assert decision.grant_expire_time is not None
    assert decision.grant_expire_time > datetime.now(UTC)
    assert decision.grant_token not in repr(decision)  # a credential: never logged


async def test_destructive_waits_until_another_client_approves(server: ServerProcess) -> None:
    stubs = server.stubs()
    async with AsyncSignoff.connect(server.target, backoff=FAST) as signoff:
        instance = await signoff.invoke_agent(envelope())
        asking = asyncio.create_task(
            signoff.request_decision(instance.instance_id, **refund(), timeout=PATIENCE)
        )
        action = await asyncio.to_thread(waiting_action, stubs, instance.instance_id)
        await asyncio.sleep(0.4)  # let the SDK settle into its watch
        assert not asking.done(), "a DESTRUCTIVE action must wait for a human"
        await asyncio.to_thread(
            decide, stubs, action.action_id, pb.VERDICT_APPROVE, "alice", "refund matches the order"
        )
        decision = await asking

        assert decision.outcome == APPROVED
        assert decision.action_id == action.action_id
        assert decision.params == REFUND
        assert decision.approver == "alice"
        assert decision.reason == "refund matches the order"
        assert decision.action is not None and decision.action.state == pb.ACTION_STATE_APPROVED

        # The grant came from the SDK asking again after the approval event.
        assert decision.grant_token.startswith("grt_")
        executed = await signoff.report_execution(
            decision.action_id,
            True,
            "tool:adp_payments.issue_refund:tc_121",
            {"txn": "txn_q9"},
            grant_token=decision.grant_token,
        )
        assert executed.state == pb.ACTION_STATE_EXECUTED
        done = await signoff.complete_instance(instance.instance_id)
        assert done.state == pb.INSTANCE_STATE_COMPLETED
        # watch replays everything and ends after the terminal event.
        types = [event.type async for event in signoff.watch(instance.instance_id)]
    assert types == [
        pb.EVENT_TYPE_INSTANCE_CREATED,
        pb.EVENT_TYPE_ACTION_REQUESTED,
        pb.EVENT_TYPE_ACTION_DECIDED,
        pb.EVENT_TYPE_ACTION_EXECUTION_REPORTED,
        pb.EVENT_TYPE_INSTANCE_COMPLETED,
    ]


async def test_rejection_raises_action_rejected_with_the_approver(server: ServerProcess) -> None:
    stubs = server.stubs()
    async with AsyncSignoff.connect(server.target, backoff=FAST) as signoff:
        instance = await signoff.invoke_agent(envelope())
        asking = asyncio.create_task(
            signoff.request_decision(instance.instance_id, **refund(), timeout=PATIENCE)
        )
        action = await asyncio.to_thread(waiting_action, stubs, instance.instance_id)
        await asyncio.to_thread(
            decide, stubs, action.action_id, pb.VERDICT_REJECT, "bob", "order already refunded"
        )
        with pytest.raises(ActionRejected) as rejected:
            await asking
    assert rejected.value.approver == "bob"
    assert rejected.value.reason == "order already refunded"
    assert rejected.value.decision.action_id == action.action_id
    assert rejected.value.decision.outcome == "REJECTED"
    assert isinstance(rejected.value, SignoffError)


async def test_cancel_while_waiting_raises_instance_terminated(server: ServerProcess) -> None:
    async with AsyncSignoff.connect(server.target, backoff=FAST) as signoff:
        instance = await signoff.invoke_agent(envelope())
        asking = asyncio.create_task(
            signoff.request_decision(instance.instance_id, **refund(), timeout=PATIENCE)
        )
        await asyncio.to_thread(waiting_action, server.stubs(), instance.instance_id)
        cancelled = await signoff.cancel_instance(instance.instance_id, "customer withdrew")
        assert cancelled.state == pb.INSTANCE_STATE_TERMINATED
        with pytest.raises(InstanceTerminated) as terminated:
            await asking
        assert terminated.value.instance_id == instance.instance_id
        # Asking again on a terminated instance is TERMINATED too.
        with pytest.raises(InstanceTerminated):
            await signoff.request_decision(instance.instance_id, **refund("tc_122"))


async def test_timeout_then_resume_with_the_persisted_wait(server: ServerProcess) -> None:
    stubs = server.stubs()
    async with AsyncSignoff.connect(server.target, backoff=FAST) as signoff:
        instance = await signoff.invoke_agent(envelope())
        with pytest.raises(DecisionTimeout) as timed_out:
            await signoff.request_decision(instance.instance_id, **refund(), timeout=0.8)
        pause = timed_out.value
        assert pause.instance_id == instance.instance_id and pause.action_id
        assert pause.revision >= 2
        # The action still waits server-side.
        async with AsyncSignoff.connect(server.target, token=mint("carol")) as inbox:
            pending = await inbox.list_pending("tenant_acme_prod")
        assert pause.action_id in {action.action_id for action in pending}

        # Later, possibly in another process: approve, then resume from the persisted pause.
        await asyncio.to_thread(decide, stubs, pause.action_id, pb.VERDICT_APPROVE, "carol", "ok")
        decision = await signoff.wait_for_decision(
            pause.instance_id,
            pause.action_id,
            pause.revision,
            proposal=proposed_action(**refund()),
            timeout=PATIENCE,
        )
        assert decision.outcome == APPROVED and decision.params == REFUND
        assert decision.approver == "carol"
        assert decision.grant_token.startswith("grt_")

        # Without the proposal the outcome is known, but the stream carries no params and
        # no grant: such an approval cannot be acted on.
        bare = await signoff.wait_for_decision(
            pause.instance_id, pause.action_id, pause.revision, timeout=PATIENCE
        )
        assert bare.outcome == APPROVED and bare.approver == "carol"
        assert bare.params is None and bare.action is None and bare.grant_token == ""

        # The resumed agent acts with the grant it was handed (the bare wait asked nothing).
        executed = await signoff.report_execution(
            decision.action_id, True, "tool:refund", grant_token=decision.grant_token
        )
        assert executed.state == pb.ACTION_STATE_EXECUTED
        # Resumed once more, it learns the action ran: consumed, and no grant to run it with.
        again = await signoff.wait_for_decision(
            pause.instance_id,
            pause.action_id,
            pause.revision,
            proposal=proposed_action(**refund()),
            timeout=PATIENCE,
        )
        assert again.consumed and again.grant_token == ""


async def test_grants_are_single_use_and_the_latest_one_counts(server: ServerProcess) -> None:
    async with AsyncSignoff.connect(server.target) as signoff:
        instance = await signoff.invoke_agent(envelope())
        lookup = dict(
            tool_call_id="tc_117",
            tool="adp_orders.lookup",
            params={"order_id": "ord_881"},
            risk_class="READ_ONLY",
        )
        first = await signoff.request_decision(instance.instance_id, **lookup)
        # An approved action is not reported without its grant.
        with pytest.raises(SignoffError) as missing:
            await signoff.report_execution(first.action_id, True, "tool:lookup")
        assert missing.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert missing.value.reason == "INVALID_GRANT"

        # Asking again (a re-run agent) issues a fresh token with the same expiry, and voids
        # the previous one.
        second = await signoff.request_decision(instance.instance_id, **lookup)
        assert second.action_id == first.action_id and not second.consumed
        assert second.grant_token.startswith("grt_")
        assert second.grant_token != first.grant_token
        assert second.grant_expire_time == first.grant_expire_time
        with pytest.raises(SignoffError) as voided:
            await signoff.consume_grant(first.action_id, first.grant_token)
        assert voided.value.reason == "INVALID_GRANT"

        # Consumed right before running: EXECUTING, with the params to execute, and once.
        executing = await signoff.consume_grant(second.action_id, second.grant_token)
        assert executing.state == pb.ACTION_STATE_EXECUTING
        assert json_format.MessageToDict(executing.params) == {"order_id": "ord_881"}
        with pytest.raises(SignoffError) as twice:
            await signoff.consume_grant(second.action_id, second.grant_token)
        assert twice.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert twice.value.reason == "ALREADY_EXECUTED"

        # A re-run now learns the action is consumed, and gets no grant.
        third = await signoff.request_decision(instance.instance_id, **lookup)
        assert third.outcome == APPROVED and third.consumed and third.grant_token == ""
        # The report of an EXECUTING action needs no grant; a repeat of it is harmless.
        executed = await signoff.report_execution(second.action_id, True, "tool:lookup")
        assert executed.state == pb.ACTION_STATE_EXECUTED
        again = await signoff.report_execution(second.action_id, True, "tool:lookup")
        assert again.state == pb.ACTION_STATE_EXECUTED
        types = [e.type for e in await asyncio.to_thread(trail, server, instance.instance_id)]
        assert types.count(pb.EVENT_TYPE_ACTION_EXECUTING) == 1
        assert types.count(pb.EVENT_TYPE_ACTION_EXECUTION_REPORTED) == 1


def trail(server: ServerProcess, instance_id: str) -> list[pb.Event]:
    request = audit_pb.ListEventsRequest(instance_id=instance_id, page_size=1000)
    return list(server.stubs().audit.ListEvents(request, timeout=PATIENCE).events)


async def test_an_expired_approval_is_never_handed_out(
    make_database: Callable[[str], str], log_dir: Path
) -> None:
    with ServerProcess(make_database("sqlite"), log_dir, "--grant-ttl", "0.5") as server:
        async with AsyncSignoff.connect(server.target) as signoff:
            instance = await signoff.invoke_agent(envelope())
            lookup = dict(
                tool_call_id="tc_117",
                tool="adp_orders.lookup",
                params={"order_id": "ord_881"},
                risk_class="READ_ONLY",
            )
            fresh = await signoff.request_decision(instance.instance_id, **lookup)
            assert fresh.grant_token
            await asyncio.sleep(1.0)
            # Still APPROVED server-side, but too old to act on: the SDK fails closed.
            with pytest.raises(SignoffError) as expired:
                await signoff.request_decision(instance.instance_id, **lookup)
            assert expired.value.reason == "GRANT_EXPIRED"
            assert expired.value.metadata == {"action_id": fresh.action_id}
            with pytest.raises(SignoffError) as late:
                await signoff.consume_grant(fresh.action_id, fresh.grant_token)
            assert late.value.reason == "GRANT_EXPIRED"


async def test_wait_false_returns_the_waiting_decision(server: ServerProcess) -> None:
    async with AsyncSignoff.connect(server.target) as signoff:
        instance = await signoff.invoke_agent(envelope())
        decision = await signoff.request_decision(instance.instance_id, **refund(), wait=False)
        assert decision.outcome == WAITING_FOR_HUMAN
        assert decision.gate_ids and decision.revision >= 2
        # Idempotent by (instance_id, tool_call_id): the repeat names the same action.
        again = await signoff.request_decision(instance.instance_id, **refund(), wait=False)
        assert again.action_id == decision.action_id


async def test_evaluate_policy_is_a_dry_run(server: ServerProcess, sync_client: Signoff) -> None:
    waits = proposed_action("tc_dry", "adp_payments.issue_refund", REFUND, "DESTRUCTIVE")
    reads = proposed_action("tc_dry", "adp_orders.lookup", {"order_id": "ord_881"}, "READ_ONLY")
    async with AsyncSignoff.connect(server.target) as signoff:
        answer = await signoff.evaluate_policy(envelope_dict(), waits)
    assert answer.effect == policy_pb.EFFECT_REQUIRE_APPROVAL
    assert list(answer.gate_ids) == ["GATE_DEFAULT"]
    assert sync_client.evaluate_policy(envelope(), reads).effect == policy_pb.EFFECT_ALLOW


async def test_errors_are_typed(server: ServerProcess) -> None:
    async with AsyncSignoff.connect(server.target) as signoff:
        instance = await signoff.invoke_agent(envelope())
        decision = await signoff.request_decision(instance.instance_id, **refund(), wait=False)
        async with AsyncSignoff.connect(server.target, token=mint("alice")) as alice:
            first = await alice.submit_decision(decision.action_id, "APPROVE", "fine")
        assert first.action.state == pb.ACTION_STATE_APPROVED
        with pytest.raises(AlreadyDecided) as lost:
            async with AsyncSignoff.connect(server.target, token=mint("bob")) as bob:
                await bob.submit_decision(decision.action_id, "REJECT", "no")
        assert lost.value.code == grpc.StatusCode.ABORTED
        assert lost.value.reason == "ALREADY_DECIDED"
        assert lost.value.winning_approver == "alice"

        with pytest.raises(SignoffError) as missing:
            await signoff.get_instance("ins_does_not_exist")
        assert missing.value.code == grpc.StatusCode.NOT_FOUND
        assert missing.value.reason == "INSTANCE_NOT_FOUND"
        assert missing.value.metadata == {"instance_id": "ins_does_not_exist"}

        with pytest.raises(SignoffError) as invalid:
            await signoff.request_decision(
                instance.instance_id,
                tool_call_id="tc_9",
                tool="no dots",
                params={},
                risk_class="NETWORK",
            )
        assert invalid.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "action.tool" in invalid.value.field_violations

        # A different proposal under a used tool_call_id is refused, never approved.
        with pytest.raises(SignoffError) as reused:
            await signoff.request_decision(
                instance.instance_id, **{**refund(), "params": {**REFUND, "amount": 9999}}
            )
        assert reused.value.reason == "IDEMPOTENCY_KEY_REUSED"

        with pytest.raises(SignoffError) as unknown:  # an error during a wait
            await signoff.wait_for_decision("ins_does_not_exist", "act_x", 0, timeout=PATIENCE)
        assert unknown.value.code == grpc.StatusCode.NOT_FOUND

    with pytest.raises(ValueError) as bad:
        proposed_action("tc_1", "a.b", {}, "HARMLESS")
    assert str(bad.value) == (
        "unknown RISK_CLASS 'HARMLESS'; valid: READ_ONLY, LOCAL_WRITE, NETWORK, DELEGATED, "
        "DESTRUCTIVE"
    )
    assert unknown.value.reason == ErrorReason.INSTANCE_NOT_FOUND == "INSTANCE_NOT_FOUND"


async def test_survives_a_server_restart_while_waiting(
    make_database: Callable[[str], str], log_dir: Path
) -> None:
    database, port = make_database("sqlite"), free_port()
    first = ServerProcess(database, log_dir).start(port=port)
    try:
        async with AsyncSignoff.connect(first.target, backoff=FAST) as signoff:
            instance = await signoff.invoke_agent(envelope())
            asking = asyncio.create_task(
                signoff.request_decision(instance.instance_id, **refund(), timeout=PATIENCE)
            )
            seen: list[pb.Event] = []

            async def follow() -> None:
                async for event in signoff.watch(instance.instance_id):
                    seen.append(event)

            following = asyncio.create_task(follow())
            action = await asyncio.to_thread(waiting_action, first.stubs(), instance.instance_id)
            while len(seen) < 2:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.4)  # the SDK is watching
            await asyncio.to_thread(first.stop)  # graceful: the stream ends with UNAVAILABLE
            assert not asking.done()
            second = ServerProcess(database, log_dir).start(port=port)
            try:
                await asyncio.to_thread(
                    decide, second.stubs(), action.action_id, pb.VERDICT_APPROVE, "dana", "ok"
                )
                decision = await asking
                await signoff.complete_instance(instance.instance_id)
                await asyncio.wait_for(following, PATIENCE)
            finally:
                second.stop()
    finally:
        first.stop()
    assert decision.outcome == APPROVED
    assert decision.action_id == action.action_id
    assert decision.params == REFUND and decision.approver == "dana"
    # watch() resumed from the last revision it had: every event once, in order.
    assert [event.revision for event in seen] == [1, 2, 3, 4]
    assert seen[-1].type == pb.EVENT_TYPE_INSTANCE_COMPLETED


# ---- blocking client ---------------------------------------------------------------------


def test_sync_client_waits_approves_and_rejects(
    server: ServerProcess, sync_client: Signoff
) -> None:
    stubs = server.stubs()
    instance = sync_client.invoke_agent(envelope_dict())
    assert sync_client.request_decision(
        instance.instance_id,
        tool_call_id="tc_117",
        tool="adp_orders.lookup",
        params={"order_id": "ord_881"},
        risk_class="READ_ONLY",
    ).params == {"order_id": "ord_881"}

    with ThreadPoolExecutor(1) as pool:
        asking = pool.submit(
            sync_client.request_decision, instance.instance_id, **refund(), timeout=PATIENCE
        )
        action = waiting_action(stubs, instance.instance_id)
        decide(stubs, action.action_id, pb.VERDICT_APPROVE, "alice", "ok")
        decision = asking.result(PATIENCE)
    assert decision.outcome == APPROVED and decision.params == REFUND
    assert decision.approver == "alice"
    # The blocking client spends grants the same ways.
    with pytest.raises(SignoffError) as wrong:
        sync_client.consume_grant(decision.action_id, "grt_not_the_grant")
    assert wrong.value.reason == "INVALID_GRANT"
    executing = sync_client.consume_grant(decision.action_id, decision.grant_token)
    assert executing.state == pb.ACTION_STATE_EXECUTING
    with pytest.raises(SignoffError) as twice:
        sync_client.consume_grant(decision.action_id, decision.grant_token)
    assert twice.value.reason == "ALREADY_EXECUTED"
    reported = sync_client.report_execution(decision.action_id, False, error_message="bank down")
    assert reported.state == pb.ACTION_STATE_FAILED

    with ThreadPoolExecutor(1) as pool:
        asking = pool.submit(
            sync_client.request_decision,
            instance.instance_id,
            **refund("tc_122"),
            timeout=PATIENCE,
        )
        action = waiting_action(stubs, instance.instance_id)
        decide(stubs, action.action_id, pb.VERDICT_REJECT, "bob", "duplicate")
        with pytest.raises(ActionRejected) as rejected:
            asking.result(PATIENCE)
    assert rejected.value.approver == "bob" and rejected.value.reason == "duplicate"

    with pytest.raises(DecisionTimeout):
        sync_client.request_decision(instance.instance_id, **refund("tc_123"), timeout=0.5)
    with ThreadPoolExecutor(1) as pool:
        asking = pool.submit(
            sync_client.request_decision,
            instance.instance_id,
            **refund("tc_123"),
            timeout=PATIENCE,
        )
        waiting_action(stubs, instance.instance_id)
        sync_client.cancel_instance(instance.instance_id, "stop")
        with pytest.raises(InstanceTerminated):
            asking.result(PATIENCE)
    events = list(sync_client.watch(instance.instance_id))
    assert events[-1].type == pb.EVENT_TYPE_INSTANCE_TERMINATED
    assert [e.revision for e in events] == list(range(1, len(events) + 1))


def test_sync_client_survives_a_server_crash_while_waiting(
    make_database: Callable[[str], str], log_dir: Path
) -> None:
    database, port = make_database("sqlite"), free_port()
    first = ServerProcess(database, log_dir).start(port=port)
    second: ServerProcess | None = None
    try:
        with Signoff.connect(first.target, backoff=FAST) as signoff, ThreadPoolExecutor(1) as pool:
            instance = signoff.invoke_agent(envelope())
            asking = pool.submit(
                signoff.request_decision, instance.instance_id, **refund(), timeout=PATIENCE
            )
            action = waiting_action(first.stubs(), instance.instance_id)
            time.sleep(0.4)  # the SDK is watching
            first.kill()  # no goodbye: the connection just drops
            assert not asking.done()
            second = ServerProcess(database, log_dir).start(port=port)
            decide(second.stubs(), action.action_id, pb.VERDICT_APPROVE, "erin", "ok")
            decision = asking.result(PATIENCE)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert decision.outcome == APPROVED and decision.params == REFUND
    assert decision.approver == "erin"


def test_sync_wait_for_decision_reports_an_instance_that_ended(
    server: ServerProcess, sync_client: Signoff
) -> None:
    instance = sync_client.invoke_agent(envelope())
    waiting = sync_client.request_decision(instance.instance_id, **refund(), wait=False)
    sync_client.cancel_instance(instance.instance_id)
    with pytest.raises(InstanceTerminated) as terminated:
        sync_client.wait_for_decision(
            instance.instance_id, waiting.action_id, waiting.revision, timeout=PATIENCE
        )
    assert terminated.value.decision is not None
    assert terminated.value.decision.action_id == waiting.action_id
    # An unknown action id on an instance that ends: the stream ends first.
    other = sync_client.invoke_agent(envelope())
    sync_client.complete_instance(other.instance_id)
    with pytest.raises(InstanceTerminated):
        sync_client.wait_for_decision(other.instance_id, "act_unknown", 0, timeout=PATIENCE)


def test_the_blocking_client_is_generated_from_the_asyncio_one() -> None:
    """One implementation: Signoff is what unasync makes of AsyncSignoff, never edited."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parents[2] / "scripts" / "unasync_sdk.py"
    spec = importlib.util.spec_from_file_location("unasync_sdk", script)
    assert spec is not None and spec.loader is not None
    unasync_sdk = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(unasync_sdk)
    generated = unasync_sdk.generate(unasync_sdk.SOURCE.read_text())
    assert unasync_sdk.TARGET.read_text() == generated
    assert "async def" not in generated and "await self" not in generated
    assert "class Signoff:" in generated and "time.sleep(" in generated
