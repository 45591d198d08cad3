"""Several servers on one PostgreSQL: a watcher on one replica receives, in order and
without gaps, what is committed through the others, and catches up after its notify
connection drops. (SQLite serves one process, so this is PostgreSQL only.)"""

import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from sqlalchemy.engine import make_url

from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from tests.support import ServerProcess, decide, envelope, lookup_action, refund_action

# Long enough that only a NOTIFY, never the idle re-check, can explain a prompt delivery.
QUIET = "60"
PATIENCE = 20


@pytest.fixture
def replicas(make_database: Callable[[str], str], tmp_path: Path) -> Iterator[list[ServerProcess]]:
    url = make_database("postgresql")
    started = [ServerProcess(url, tmp_path, "--bookmark-interval", QUIET).start() for _ in range(3)]
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def follow(server: ServerProcess, instance_id: str) -> "queue.Queue[pb.Event]":
    events: queue.Queue[pb.Event] = queue.Queue()
    stream = server.stubs().execution.WatchInstance(
        execution_pb.WatchInstanceRequest(instance_id=instance_id), timeout=120
    )

    def read() -> None:
        try:
            for message in stream:
                if message.HasField("event"):
                    events.put(message.event)
        except grpc.RpcError:
            pass  # the servers stop at the end of the test

    threading.Thread(target=read, daemon=True).start()
    return events


def next_revisions(events: "queue.Queue[pb.Event]", count: int) -> list[int]:
    return [events.get(timeout=PATIENCE).revision for _ in range(count)]


def test_a_watcher_sees_what_other_replicas_commit(replicas: list[ServerProcess]) -> None:
    a, b, c = replicas
    instance_id = b.stubs().execution.InvokeAgent(envelope()).instance.instance_id
    events = follow(a, instance_id)
    assert next_revisions(events, 1) == [1]
    waiting = b.stubs().execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=refund_action())
    )
    for i in range(5):  # through two other replicas, interleaved
        (b if i % 2 else c).stubs().execution.RequestDecision(
            execution_pb.RequestDecisionRequest(
                instance_id=instance_id, action=lookup_action(f"tc_{i}")
            )
        )
    decide(c, waiting.action_id, "lead", reason="ok")
    assert next_revisions(events, 7) == list(range(2, 9))


def test_a_replica_catches_up_after_its_notify_connection_drops(
    replicas: list[ServerProcess],
) -> None:
    a, b, _ = replicas
    instance_id = b.stubs().execution.InvokeAgent(envelope()).instance.instance_id
    events = follow(a, instance_id)
    assert next_revisions(events, 1) == [1]
    admin = make_url(a.database_url).set(drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = 'signoff-notify' AND datname = current_database()"
        ).fetchone()
    assert killed is not None and killed[0] == 3  # one listener per replica
    for i in range(3):
        b.stubs().execution.RequestDecision(
            execution_pb.RequestDecisionRequest(
                instance_id=instance_id, action=lookup_action(f"tc_{i}")
            )
        )
    assert next_revisions(events, 3) == [2, 3, 4]
