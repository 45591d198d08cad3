"""`signoff serve --workers N`: N whole server processes on one port (PostgreSQL only),
each a replica; SQLite and development mode refuse it."""

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import execution_service_pb2_grpc as execution_grpc
from signoff.v1 import types_pb2 as pb
from signoff_client.auth import bearer_channel
from tests.support import (
    AGENT_TOKEN,
    AUTH_CONFIG,
    ServerProcess,
    decide,
    envelope,
    eventually,
    log_lines,
    refund_action,
)

EXECUTION = "signoff.v1.ExecutionService"


def serve(*flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signoff.cli", "serve", "--port", "0", *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_sqlite_refuses_more_than_one_worker(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'signoff.db'}"
    refused = serve("--workers", "2", "--database-url", database, "--auth-config", str(AUTH_CONFIG))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "signoff: --workers 2 needs PostgreSQL: each worker is a replica sharing the database, "
        "and sqlite is served by one process"
    ]
    assert not (tmp_path / "signoff.db").exists()  # refused before anything was created


def test_development_mode_refuses_more_than_one_worker(
    make_database: Callable[[str], str],
) -> None:
    refused = serve("--workers", "3", "--database-url", make_database("postgresql"))
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "--workers 3 needs --auth-config" in refused.stderr


@pytest.fixture
def workers(make_database: Callable[[str], str], tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        make_database("postgresql"), tmp_path, "--workers", "2", "--metrics-port", "0"
    )
    with server:
        yield server


def metrics_urls(server: ServerProcess) -> list[str]:
    prefix = "signoff metrics on "
    return [line.removeprefix(prefix) for line in server.banner if line.startswith(prefix)]


def handled(url: str) -> float:
    """GetInstance calls this worker answered."""
    text = httpx.get(url, timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "grpc_server_handled_total"
        and sample.labels.get("grpc_method") == "GetInstance"
    )


def worker_pids(server: ServerProcess) -> list[int]:
    assert server.process is not None
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def test_two_workers_answer_on_one_port_and_share_decisions(workers: ServerProcess) -> None:
    urls = metrics_urls(workers)
    assert len(urls) == 2 and len(set(urls)) == 2  # one /metrics per worker
    assert len(worker_pids(workers)) == 2
    agent = workers.stubs()
    instance_id = agent.execution.InvokeAgent(envelope()).instance.instance_id

    # Each new connection lands on one worker (the kernel's choice): find one on each.
    by_worker: dict[int, grpc.Channel] = {}
    opened: list[grpc.Channel] = []
    for _ in range(60):
        # A connection of its own (gRPC would share one among channels to one target).
        channel = bearer_channel(
            workers.target, AGENT_TOKEN, options=[("grpc.use_local_subchannel_pool", 1)]
        )
        opened.append(channel)
        before = [handled(url) for url in urls]
        channel.unary_unary(
            f"/{EXECUTION}/GetInstance",
            request_serializer=execution_pb.GetInstanceRequest.SerializeToString,
            response_deserializer=execution_pb.GetInstanceResponse.FromString,
        )(execution_pb.GetInstanceRequest(instance_id=instance_id), timeout=10)
        answered = eventually(
            lambda before=before: [i for i, url in enumerate(urls) if handled(url) > before[i]]
        )
        assert len(answered) == 1
        by_worker.setdefault(answered[0], channel)
        if len(by_worker) == 2:
            break
    assert sorted(by_worker) == [0, 1], "every connection went to the same worker"

    # A watcher on one worker hears a decision made through the other.
    watcher = execution_grpc.ExecutionServiceStub(by_worker[0])
    asker = execution_grpc.ExecutionServiceStub(by_worker[1])
    asked = asker.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=refund_action())
    )
    assert asked.outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    stream = watcher.WatchInstance(
        execution_pb.WatchInstanceRequest(instance_id=instance_id, after_revision=2), timeout=30
    )
    decide(workers, asked.action_id, "alice")  # a third connection: either worker
    first = next(item for item in stream if item.HasField("event"))
    assert first.event.type == pb.EVENT_TYPE_ACTION_DECIDED
    stream.cancel()
    for channel in opened:
        channel.close()
    # Both wrote the calls they answered to the one log, each line saying which worker.
    answered = {
        line.get("worker") for line in log_lines(workers) if line.get("logger") == "signoff.rpc"
    }
    assert answered == {0, 1}


def test_a_worker_that_dies_takes_the_others_down(workers: ServerProcess) -> None:
    pids = worker_pids(workers)
    os.kill(pids[0], signal.SIGKILL)
    assert workers.process is not None
    assert workers.process.wait(60) == 1
    # The other worker was stopped too.
    assert eventually(lambda: not Path(f"/proc/{pids[1]}").exists() or _zombie(pids[1]))


def test_sigterm_stops_every_worker(workers: ServerProcess) -> None:
    pids = worker_pids(workers)
    assert workers.stop(signal.SIGTERM) == 0
    assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in pids)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
