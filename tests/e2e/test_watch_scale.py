"""Watch streams at scale (issue 5): idle streams bookmark from what the hub has heard
instead of each reading the database, their bookmarks stay true when a replica cannot hear
the others, and the watch metrics count streams and live pushes."""

import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import psycopg
import pytest
from sqlalchemy.engine import make_url

from signoff.domain.models import ApprovalChange, Event
from signoff.domain.states import (
    ActionState,
    ApprovalChangeKind,
    EventType,
    InstanceState,
)
from signoff.store.hub import Hub, tenant_key
from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from tests.e2e.test_watch import TIMEOUT, Reader, complete, start, watch
from tests.support import ServerProcess, decide, envelope, error_info, lookup_action, scrape


def open_streams(server: ServerProcess) -> dict[str, float]:
    samples = scrape(server)
    return {
        stream: samples.get(("signoff_watch_streams_open", frozenset({("stream", stream)})), 0)
        for stream in ("instance", "approvals")
    }


def pushes(server: ServerProcess) -> float:
    """How many live items were pushed (the push-lag histogram's count)."""
    return scrape(server).get(("signoff_watch_push_lag_seconds_count", frozenset()), 0)


def eventually(check: Callable[[], object], timeout: float = TIMEOUT) -> None:
    """Polls until `check()` is true; a guard against hanging, never a speed assertion."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def metered(
    database_kind: str,
    make_database: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    with ServerProcess(
        make_database(database_kind), tmp_path_factory.mktemp("logs"), "--metrics-port", "0"
    ) as server:
        yield server


def test_open_streams_are_counted_until_they_end_however_they_end(
    metered: ServerProcess,
) -> None:
    stubs = metered.stubs()
    before = open_streams(metered)
    instance_id, _ = start(stubs)
    readers = [Reader(watch(stubs, instance_id)) for _ in range(3)]
    for reader in readers:
        assert reader.next_event().revision == 1
    feed = stubs.as_("lead").approval.WatchApprovals(
        approval_pb.WatchApprovalsRequest(tenant_id="tenant_acme_prod"), timeout=TIMEOUT
    )
    next(feed)  # the feed is open: its backlog or a bookmark
    eventually(
        lambda: (
            open_streams(metered)
            == {"instance": before["instance"] + 3, "approvals": before["approvals"] + 1}
        )
    )

    with pytest.raises(grpc.RpcError) as refused:  # refused at the start
        list(watch(stubs, "ins_missing"))
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    readers[0].stream.cancel()  # the client goes away
    feed.cancel()
    stubs.execution.CancelInstance(execution_pb.CancelInstanceRequest(instance_id=instance_id))
    for reader in readers[1:]:  # the server ends them with OK after the terminal event
        assert reader.events_until_end()[-1].type == pb.EVENT_TYPE_INSTANCE_TERMINATED
    eventually(lambda: open_streams(metered) == before)


def test_live_pushes_are_timed_and_the_backlog_is_not(metered: ServerProcess) -> None:
    stubs = metered.stubs()
    instance_id, action_id = start(stubs)  # revisions 1 and 2 exist before anyone watches
    before = pushes(metered)
    readers = [Reader(watch(stubs, instance_id)) for _ in range(2)]
    for reader in readers:
        assert [reader.next_event().revision for _ in range(2)] == [1, 2]
    assert pushes(metered) == before  # replayed from the database, not pushed live
    decide(stubs, action_id, "lead", reason="ok")
    for reader in readers:
        assert reader.next_event().type == pb.EVENT_TYPE_ACTION_DECIDED
    eventually(lambda: pushes(metered) == before + 2)
    complete(stubs, instance_id)


def _transactions(database_url: str) -> int:
    """Transactions the database has run so far (PostgreSQL's own statistics)."""
    url = make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database "
            "WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_idle_streams_do_not_read_the_database_for_each_bookmark(
    make_database: Callable[[str], str], tmp_path: Path
) -> None:
    url = make_database("postgresql")
    with ServerProcess(url, tmp_path, "--bookmark-interval", "0.5") as server:
        stubs = server.stubs()
        instances = [stubs.execution.InvokeAgent(envelope()).instance for _ in range(5)]
        readers = [
            Reader(
                stubs.execution.WatchInstance(
                    execution_pb.WatchInstanceRequest(instance_id=instances[i % 5].instance_id),
                    timeout=120,
                )
            )
            for i in range(50)
        ]
        for reader in readers:
            assert reader.next_event().revision == 1
            reader.next_bookmark()  # idle from here on
        time.sleep(11)  # PostgreSQL counts a backend's transactions up to 10 s late
        for reader in readers:  # count only what arrives from now on
            while not reader.messages.empty():
                reader.messages.get()
        first = _transactions(url)
        time.sleep(5)
        transactions = _transactions(url) - first
        bookmarks = sum(reader.messages.qsize() for reader in readers)
    # Reading the database for each bookmark would take a transaction per bookmark; what is
    # left is the server's own background work (timers, LISTEN syncs), whatever the streams.
    assert bookmarks >= 50
    assert transactions < bookmarks / 3, (transactions, bookmarks)


def _invoke(server: ServerProcess) -> None:
    server.stubs().execution.InvokeAgent(envelope())


def test_a_replica_that_cannot_hear_the_others_reads_before_it_bookmarks(
    make_database: Callable[[str], str], tmp_path: Path
) -> None:
    url = make_database("postgresql")
    admin = make_url(url).set(drivername="postgresql", database="postgres")
    name = make_url(url).database
    a = ServerProcess(url, tmp_path, "--bookmark-interval", "0.5").start()
    b = ServerProcess(url, tmp_path, "--bookmark-interval", "0.5").start()
    try:
        for server in (a, b):  # pooled connections enough for what follows
            warm = [threading.Thread(target=_invoke, args=(server,)) for _ in range(4)]
            for thread in warm:
                thread.start()
            for thread in warm:
                thread.join()
        instance_id = b.stubs().execution.InvokeAgent(envelope()).instance.instance_id
        reader = Reader(watch(a.stubs(), instance_id))
        assert reader.next_event().revision == 1
        assert reader.next_bookmark().revision == 1
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as c:
            # The replicas keep their pooled connections, but their LISTEN connections
            # cannot come back: they hear nothing from each other any more.
            c.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'signoff-notify' AND datname = %s",
                (name,),
            )
        b.stubs().execution.RequestDecision(
            execution_pb.RequestDecisionRequest(
                instance_id=instance_id, action=lookup_action("tc_deaf")
            )
        )
        committed = datetime.now(UTC)
        while True:  # every bookmark up to the new event predates its commit
            message = reader.messages.get(timeout=TIMEOUT)
            assert isinstance(message, execution_pb.WatchInstanceResponse), message
            if message.HasField("event"):
                assert message.event.revision == 2
                break
            assert message.bookmark.revision == 1
            assert message.bookmark.time.ToDatetime(UTC) < committed
        assert reader.next_bookmark().revision == 2
    finally:
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as c:
            c.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        a.stop()
        b.stop()


def test_a_stream_ended_by_shutdown_names_the_last_revision_it_sent(
    make_database: Callable[[str], str], tmp_path: Path
) -> None:
    server = ServerProcess(make_database("sqlite"), tmp_path).start()
    try:
        instance_id, _ = start(server.stubs())
        stream = watch(server.stubs(), instance_id)
        assert [next(stream).event.revision for _ in range(2)] == [1, 2]
        assert server.process is not None
        server.process.send_signal(signal.SIGINT)  # channels stay open, unlike stop()
        assert server.process.wait(30) == 0
        with pytest.raises(grpc.RpcError) as ended:
            for _ in stream:  # bookmarks may still be buffered
                pass
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        info = error_info(ended.value)
        assert info.reason == "SERVER_SHUTTING_DOWN"
        assert info.metadata["revision"] == "2"  # resume from there
    finally:
        server.stop()


def _event(revision: int) -> Event:
    now = datetime.now(UTC)
    return Event("ins_1", "t", revision, EventType.ACTION_REQUESTED, now, InstanceState.RUNNING)


def _change(cursor: int) -> ApprovalChange:
    return ApprovalChange(
        tenant_id="t",
        cursor=cursor,
        kind=ApprovalChangeKind.REQUESTED,
        action_id="act_1",
        instance_id="ins_1",
        revision=cursor,
        action_state=ActionState.WAITING_FOR_HUMAN,
        tool="x.y",
        gate_id="GATE",
        actor="policy",
        time=datetime.now(UTC),
    )


def test_the_hub_vouches_only_for_what_it_has_heard() -> None:
    alone = Hub(sole_writer=True)  # SQLite: every commit passes through it
    assert alone.seen_through("ins_1") is not None
    keys = alone.committing([_event(1)], [_change(1)])
    assert keys == {"ins_1", tenant_key("t")}
    assert alone.seen_through("ins_1") is None  # committed, perhaps, but not yet published
    assert alone.seen_through(tenant_key("t")) is None
    assert alone.seen_through("ins_2") is not None
    alone.publish([_event(1)], [_change(1)])
    assert alone.seen_through("ins_1") is not None

    watcher = alone.subscribe("ins_1")
    alone.unsure(alone.committing([_event(2)], []))  # a commit that failed or was cancelled
    assert watcher.take() == ([], True)  # the watcher re-reads the database
    assert alone.seen_through("ins_1") is not None

    replica = Hub()  # PostgreSQL: only as far as the LISTEN connection has synced
    assert replica.seen_through("ins_1") is None
    replica.synced(123.0)
    assert replica.seen_through("ins_1") == 123.0
