"""Real signoff server processes and databases for tests: no mocks of either."""

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import httpx
import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from signoff.auth.authenticators import jwks_json
from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import approval_service_pb2_grpc as approval_grpc
from signoff.v1 import audit_service_pb2_grpc as audit_grpc
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import execution_service_pb2_grpc as execution_grpc
from signoff.v1 import policy_service_pb2_grpc as policy_grpc
from signoff.v1 import types_pb2 as pb
from signoff_client.auth import bearer_channel

POSTGRES_URL = os.environ.get("SIGNOFF_TEST_POSTGRES_URL", "")

# Test servers trust JWTs signed with this run's key, so a test can act as anyone.
ISSUER, AUDIENCE = "https://issuer.signoff.test", "signoff"
SIGNING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_AUTH_DIR = Path(tempfile.mkdtemp(prefix="signoff-auth-"))
atexit.register(shutil.rmtree, _AUTH_DIR, ignore_errors=True)
(_AUTH_DIR / "jwks.json").write_text(jwks_json({"test-key": SIGNING_KEY.public_key()}))
AUTH_CONFIG = _AUTH_DIR / "auth.yaml"
AUTH_CONFIG.write_text(
    f"jwt:\n  issuer: {ISSUER}\n  audience: {AUDIENCE}\n  jwks_file: jwks.json\n"
    "  leeway_seconds: 5\n"
)


def mint(
    subject: str,
    kind: str = "human",
    tenant: str = "*",
    roles: tuple[str, ...] = (),
    *,
    lifetime: float = 3600,
    issuer: str = ISSUER,
    audience: str = AUDIENCE,
    key: Any = None,
) -> str:
    """A JWT as the identity provider would issue it."""
    now = int(time.time())
    claims = {
        "sub": subject,
        "kind": kind,
        "tenant": tenant,
        "roles": list(roles),
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + int(lifetime),
    }
    return jwt.encode(claims, key or SIGNING_KEY, algorithm="RS256", headers={"kid": "test-key"})


# The default caller of tests: an agent of every tenant that may also read the audit trail.
AGENT_TOKEN = mint("agt_support", kind="agent", roles=("admin",))
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
    server: "ServerProcess"

    def as_(self, human: str, *roles: str, tenant: str = "*") -> "Stubs":
        """The same server, called by the human `human` (an approver, say)."""
        return self.server.stubs(mint(human, "human", tenant, roles))


class ServerProcess:
    """`signoff serve` as its own OS process, on a free loopback port."""

    def __init__(
        self,
        database_url: str,
        log_dir: Path,
        *extra: str,
        policy: Path = OPEN_POLICY,
        auth_config: Path | None = AUTH_CONFIG,
        env: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        # Extra environment for the server process (OTEL_*, SIGNOFF_*), over the tests' own.
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_dir / f"server-{uuid.uuid4().hex[:8]}.log"
        auth = ("--auth-config", str(auth_config)) if auth_config else ()
        self.extra = ("--policy", str(policy), *auth, *extra)
        self.process: subprocess.Popen[str] | None = None
        self.target = ""
        # What the server printed before its listening line (the metrics URL, say).
        self.banner: list[str] = []
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
            env=self.env,
        )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        self.banner = []
        for line in self.process.stdout:
            if line.startswith("signoff listening on "):
                self.target = line.split()[-1]
                break
            self.banner.append(line.rstrip("\n"))
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

    @property
    def metrics_url(self) -> str:
        """The /metrics URL the server printed ("" without --metrics-port)."""
        prefix = "signoff metrics on "
        found = [line for line in self.banner if line.startswith(prefix)]
        return found[0].removeprefix(prefix) if found else ""

    def channel(self, token: str | None = AGENT_TOKEN) -> grpc.Channel:
        channel = bearer_channel(self.target, token or "")
        self._channels.append(channel)
        return channel

    def stubs(self, token: str | None = AGENT_TOKEN) -> Stubs:
        """Stubs that call as `token` (by default the test agent; None: no credentials)."""
        channel = self.channel(token)
        return Stubs(
            execution_grpc.ExecutionServiceStub(channel),
            approval_grpc.ApprovalServiceStub(channel),
            audit_grpc.AuditServiceStub(channel),
            policy_grpc.PolicyServiceStub(channel),
            self,
        )

    def as_(self, human: str, *roles: str, tenant: str = "*") -> Stubs:
        return self.stubs(mint(human, "human", tenant, roles))

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


def events(stream: Iterable[execution_pb.WatchInstanceResponse]) -> Iterator[pb.Event]:
    """The events of a watch stream. Bookmarks are skipped: a stream sends one whenever it idles
    for a bookmark interval (0.3 s here), which a slow machine can do between any two events."""
    return (message.event for message in stream if message.HasField("event"))


def decide(
    caller: "Stubs | ServerProcess",
    action_id: str,
    approver: str,
    verdict: int = pb.VERDICT_APPROVE,
    reason: str = "checked",
    request_id: str = "",
    *,
    edited_params: struct_pb2.Struct | None = None,
    evidence_snapshot_hash: str = "",
    **call: Any,
) -> approval_pb.SubmitDecisionResponse:
    """One vote on `action_id` by the human `approver`, under a fresh request id unless one
    is given; `call` goes to the RPC (metadata, timeout)."""
    return caller.as_(approver).approval.SubmitDecision(
        approval_pb.SubmitDecisionRequest(
            action_id=action_id,
            verdict=verdict,
            reason=reason,
            request_id=request_id or f"dec_{uuid.uuid4().hex}",
            edited_params=edited_params,
            evidence_snapshot_hash=evidence_snapshot_hash,
        ),
        **call,
    )


def waiting_refund(
    stubs: Stubs, **overrides: object
) -> tuple[str, execution_pb.RequestDecisionResponse]:
    """A new instance (its envelope with `overrides`) and the answer to its refund, which
    waits for a human."""
    instance = stubs.execution.InvokeAgent(envelope(**overrides)).instance
    answer = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(
            instance_id=instance.instance_id, action=refund_action()
        )
    )
    return instance.instance_id, answer


def rpc_error(call: Callable[..., object], *args: object, **kwargs: object) -> grpc.RpcError:
    """The error `call(*args, **kwargs)` raises (it must raise one)."""
    with pytest.raises(grpc.RpcError) as raised:
        call(*args, **kwargs)
    return raised.value


def log_lines(server: ServerProcess) -> list[dict[str, Any]]:
    """The server's log file, every line a JSON object (the default --log-format json)."""
    text = server.log_path.read_text()
    written = text[: text.rfind("\n") + 1]  # a line being written is read next time
    return [json.loads(line) for line in written.splitlines() if line.strip()]


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


# Every sample of a server's /metrics, by metric name and labels.
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: ServerProcess) -> Samples:
    response = httpx.get(server.metrics_url, timeout=10)
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
