"""A database that cannot be reached answers UNAVAILABLE (DATABASE_UNAVAILABLE), so clients
retry; the outage is logged once when it starts and once when it ends, never with a
traceback per call; and when the database is back, calls succeed again by themselves."""

import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from signoff.store.database import unreachable
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from tests.conftest import require_database
from tests.support import (
    POSTGRES_URL,
    ServerProcess,
    Stubs,
    decide,
    envelope,
    error_info,
    log_lines,
    refund_action,
    rpc_error,
    waiting_refund,
)

POSTGRES = Path(__file__).parents[2] / "scripts" / "postgres"


def outage_lines(server: ServerProcess) -> list[str]:
    """The messages of WARNING and ERROR lines, and of every line about connections."""
    return [
        str(line["message"])
        for line in log_lines(server)
        if line["level"] in ("WARNING", "ERROR", "CRITICAL")
        or line["logger"] in ("signoff.database", "signoff.notify")
    ]


def calls(stubs: Stubs, instance_id: str, action_id: str) -> list[Callable[[], object]]:
    """One call of each kind that needs the database: writes, reads and a stream."""
    return [
        lambda: stubs.execution.InvokeAgent(envelope()),
        lambda: stubs.execution.GetInstance(
            execution_pb.GetInstanceRequest(instance_id=instance_id)
        ),
        lambda: stubs.execution.RequestDecision(
            execution_pb.RequestDecisionRequest(
                instance_id=instance_id, action=refund_action("tc_during_outage")
            )
        ),
        lambda: decide(stubs, action_id, "lead"),
        lambda: stubs.audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance_id)),
        lambda: list(
            stubs.execution.WatchInstance(
                execution_pb.WatchInstanceRequest(instance_id=instance_id), timeout=30
            )
        ),
    ]


def until_it_answers(call: Callable[[], object], seconds: float = 60) -> object:
    """What a client does with UNAVAILABLE: retry (with the same request) until it answers."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def own_cluster() -> Iterator[tuple[Path, str]]:
    """A PostgreSQL cluster for this test alone (it is stopped and started again)."""
    require_database("postgresql")
    directory = Path(tempfile.mkdtemp(prefix="signoff-outage-", dir="/tmp"))
    started = subprocess.run(
        [POSTGRES, "start", directory], capture_output=True, text=True, check=True
    )
    try:
        yield directory, started.stdout.strip()
    finally:
        subprocess.run([POSTGRES, "stop", directory], check=False)
        shutil.rmtree(directory, ignore_errors=True)


def test_a_postgresql_outage_answers_unavailable_until_it_is_back(
    own_cluster: tuple[Path, str], tmp_path: Path
) -> None:
    cluster, url = own_cluster
    with ServerProcess(url, tmp_path) as server:
        stubs = server.stubs()
        instance_id, waiting = waiting_refund(stubs)
        action_id = waiting.action_id

        subprocess.run([POSTGRES, "stop", cluster], check=True)
        refused = 0
        for _ in range(5):
            for call in calls(stubs, instance_id, action_id):
                error = rpc_error(call)
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                assert error_info(error).reason == "DATABASE_UNAVAILABLE"
                refused += 1
        subprocess.run([POSTGRES, "resume", cluster], check=True)

        # Back: the waiting action is still there and is decided; new work goes through.
        decided = until_it_answers(lambda: decide(stubs, action_id, "lead", request_id="d-1"))
        assert decided.action.state == pb.ACTION_STATE_APPROVED  # type: ignore[attr-defined]
        assert stubs.execution.InvokeAgent(envelope()).instance.instance_id
        listed = stubs.audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance_id))
        assert [e.type for e in listed.events][-1] == pb.EVENT_TYPE_ACTION_DECIDED

    assert "Traceback" not in server.log_path.read_text()
    lines = outage_lines(server)
    assert sum(m.startswith("database unavailable") for m in lines) == 1, lines
    assert sum(m.startswith("database available again") for m in lines) == 1, lines
    # Besides those two: the notify connection's loss and return, once each at most.
    assert len(lines) <= 4 < refused, lines


def test_a_sqlite_database_locked_past_the_busy_timeout_answers_unavailable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "signoff.db"
    with ServerProcess(f"sqlite:///{path}", tmp_path) as server:
        stubs = server.stubs()
        instance_id, _ = waiting_refund(stubs)
        # Another process holds the write lock for longer than signoff's busy timeout (10 s).
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            error = rpc_error(lambda: stubs.execution.InvokeAgent(envelope()))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert error_info(error).reason == "DATABASE_UNAVAILABLE"
            # Reads do not wait for the writer (WAL): they still answer.
            stubs.execution.GetInstance(execution_pb.GetInstanceRequest(instance_id=instance_id))
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert stubs.execution.InvokeAgent(envelope()).instance.instance_id
    assert "Traceback" not in server.log_path.read_text()
    lines = outage_lines(server)
    assert [m.split(" (")[0].split(" after")[0] for m in lines] == [
        "database unavailable",
        "database available again",
    ], lines


def test_only_errors_of_reaching_the_database_count_as_unavailable(tmp_path: Path) -> None:
    """Real errors from real databases: a bug or a constraint is not an outage."""

    def error_of(engine: Any, statement: str) -> DBAPIError:
        with pytest.raises(DBAPIError) as raised, engine.begin() as connection:
            connection.execute(text(statement))
        return raised.value

    path = tmp_path / "classify.db"
    sqlite = create_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    with sqlite.begin() as connection:
        connection.execute(text("CREATE TABLE t (k TEXT PRIMARY KEY)"))
        connection.execute(text("INSERT INTO t VALUES ('a')"))
    assert not unreachable(error_of(sqlite, "SELECT * FROM missing"))
    assert not unreachable(error_of(sqlite, "INSERT INTO t VALUES ('a')"))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        assert unreachable(error_of(sqlite, "INSERT INTO t VALUES ('b')"))  # database is locked
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    sqlite.dispose()

    # PostgreSQL: nobody listens on the port (refused) vs. a wrong statement.
    free_port = 1  # privileged and unused on a test machine
    down = create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{free_port}/none")
    assert unreachable(error_of(down, "SELECT 1"))
    down.dispose()
    require_database("postgresql")
    up = create_engine(POSTGRES_URL)
    assert not unreachable(error_of(up, f"SELECT * FROM missing_{uuid.uuid4().hex[:8]}"))
    assert not unreachable(error_of(up, "SELECT 1/0"))
    up.dispose()
