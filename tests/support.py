"""Real signoff server processes and databases for tests: no mocks of either."""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import grpc
import psycopg
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from sqlalchemy.engine import make_url

from signoff.v1 import approval_service_pb2_grpc as approval_grpc
from signoff.v1 import audit_service_pb2_grpc as audit_grpc
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import execution_service_pb2_grpc as execution_grpc
from signoff.v1 import policy_service_pb2_grpc as policy_grpc
from signoff.v1 import types_pb2 as pb

POSTGRES_URL = os.environ.get("SIGNOFF_TEST_POSTGRES_URL", "")
POLICIES = Path(__file__).parent / "policies"
# The core-loop tests run on a bundle where anyone may approve; policy tests pick their own.
OPEN_POLICY = POLICIES / "open"
EXAMPLE_POLICY = Path(__file__).parents[1] / "examples" / "policies"


def new_database_url(kind: str, directory: Path) -> str:
    """A database of its own: a new SQLite file, or a new database in the test cluster."""
    if kind == "sqlite":
        return f"sqlite:///{directory / f'signoff-{uuid.uuid4().hex[:8]}.db'}"
    name = f"signoff_{uuid.uuid4().hex[:12]}"
    admin = make_url(POSTGRES_URL).set(drivername="postgresql")
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


@dataclass
class Stubs:
    execution: execution_grpc.ExecutionServiceStub
    approval: approval_grpc.ApprovalServiceStub
    audit: audit_grpc.AuditServiceStub
    policy: policy_grpc.PolicyServiceStub


class ServerProcess:
    """`signoff serve` as its own OS process, on a free loopback port."""

    def __init__(
        self, database_url: str, log_dir: Path, *extra: str, policy: Path = OPEN_POLICY
    ) -> None:
        self.database_url = database_url
        self.log_path = log_dir / f"server-{uuid.uuid4().hex[:8]}.log"
        self.extra = ("--policy", str(policy), *extra)
        self.process: subprocess.Popen[str] | None = None
        self.target = ""
        self._channels: list[grpc.Channel] = []

    def start(self, port: int = 0) -> "ServerProcess":
        log = self.log_path.open("a")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "signoff.cli",
                "serve",
                "--port",
                str(port),
                "--database-url",
                self.database_url,
                "--bookmark-interval",
                "0.3",
                *self.extra,
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        for line in self.process.stdout:
            if line.startswith("signoff listening on "):
                self.target = line.split()[-1]
                break
            if time.monotonic() > deadline:
                break
        if not self.target:
            self.process.kill()
            raise RuntimeError(f"server did not start:\n{self.log_path.read_text()}")
        # Keep draining stdout so the server never blocks on a full pipe.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        return self

    @property
    def port(self) -> int:
        return int(self.target.rsplit(":", 1)[1])

    def channel(self) -> grpc.Channel:
        channel = grpc.insecure_channel(self.target)
        self._channels.append(channel)
        return channel

    def stubs(self) -> Stubs:
        channel = self.channel()
        return Stubs(
            execution_grpc.ExecutionServiceStub(channel),
            approval_grpc.ApprovalServiceStub(channel),
            audit_grpc.AuditServiceStub(channel),
            policy_grpc.PolicyServiceStub(channel),
        )

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        for channel in self._channels:
            channel.close()
        self._channels.clear()
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(sig)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def envelope(**overrides: object) -> execution_pb.InvokeAgentRequest:
    """The refund request of the reference workflow, with a fresh request_id."""
    body: dict[str, object] = {
        "request_id": f"req_{uuid.uuid4().hex[:12]}",
        "session_id": "sess_42f1",
        "tenant_id": "tenant_acme_prod",
        "user": {
            "user_id": "usr_771",
            "delegation": {"auth_type": "oauth2", "scopes": ["orders.read", "payments.refund"]},
        },
        "agent": {
            "agent_id": "agt_support",
            "workload_identity": "spiffe://contextos/agents/support",
        },
        "context_pack_refs": ["ctxpack.support@5.2.0"],
        "input": {
            "intent": "support.refund",
            "message": "Refund order ord_881 for INR 4200.",
            "channel": "app_chat",
            "locale": "en-IN",
            "context": {
                "identity_verified": True,
                "order_id": "ord_881",
                "refund_amount": 4200,
                "currency": "INR",
            },
        },
        "mode": "MODE_STREAM",
        "runtime": {"max_tool_calls": 8, "max_cost_cents": 25.0},
    }
    body.update(overrides)
    return json_format.ParseDict(body, execution_pb.InvokeAgentRequest())


def refund_action(tool_call_id: str = "tc_121", amount: int = 4200) -> pb.ProposedAction:
    action = pb.ProposedAction(
        tool_call_id=tool_call_id,
        tool="adp_payments.issue_refund",
        risk_class=pb.RISK_CLASS_DESTRUCTIVE,
        evidence_refs=["kg:order:ord_881#snapshot_kg_2026_05_03_T0930"],
    )
    action.params.update({"order_id": "ord_881", "amount": amount, "currency": "INR"})
    return action


def lookup_action(tool_call_id: str = "tc_117") -> pb.ProposedAction:
    action = pb.ProposedAction(
        tool_call_id=tool_call_id, tool="adp_orders.lookup", risk_class=pb.RISK_CLASS_READ_ONLY
    )
    action.params.update({"order_id": "ord_881"})
    return action


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    """The one ErrorInfo every signoff error carries."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "signoff errors carry a google.rpc.Status"
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    assert len(infos) == 1, status
    return infos[0]


def field_violations(error: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            return {v.field: v.description for v in bad.field_violations}
    return {}
