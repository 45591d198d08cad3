"""Webhook notifications: real signoff servers post to a real HTTP receiver on loopback.

The outbox is written in the transaction of each change; deliveries are signed, retried with
backoff, survive restarts, and never hold up a decision.
"""

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
import yaml

from signoff.config import ConfigError, load_options
from signoff.domain.models import ApprovalChange
from signoff.domain.states import ActionState, ApprovalChangeKind
from signoff.services import webhooks
from signoff.services.webhooks import RetryPolicy, Webhook
from signoff.store import schema
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from signoff_client.webhooks import WebhookError, verify
from tests.conftest import DATABASE_KINDS
from tests.support import OPEN_POLICY, ServerProcess, Stubs, decide, envelope, refund_action

SECRET = "whsec-test-0123456789abcdef"
PATIENCE = 60.0  # generous: the machine is shared and noisy


# -- a real receiver ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    time: float
    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """An HTTP server on loopback that records every POST and answers each path with the
    status codes it was given, in order, then 200."""

    def __init__(self, port: int = 0, answers: dict[str, list[int]] | None = None) -> None:
        self.requests: list[Received] = []
        self.answers = {path: list(codes) for path, codes in (answers or {}).items()}
        lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    receiver.requests.append(
                        Received(time.time(), self.path, dict(self.headers.items()), body)
                    )
                    codes = receiver.answers.get(self.path)
                    status = codes.pop(0) if codes else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [request for request in list(self.requests) if request.path == path]

    def wait_for(self, path: str, count: int) -> list[Received]:
        wait_until(lambda: len(self.at(path)) >= count, f"{count} requests to {path}")
        return self.at(path)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not check():
        assert time.monotonic() < deadline, f"waited {PATIENCE}s for {what}"
        time.sleep(0.05)


def payloads(requests: list[Received], secret: str = SECRET) -> list[dict[str, Any]]:
    return [verify(request.body, request.headers, secret) for request in requests]


# -- servers with webhooks -----------------------------------------------------------------


def config(tmp_path: Path, hooks: list[dict[str, Any]], **options: Any) -> Path:
    path = tmp_path / f"signoff-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump({"webhooks": hooks, **options}))
    return path


def hook(name: str, url: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "url": url, "secret": SECRET, **fields}


def outbox(database_url: str) -> list[dict[str, Any]]:
    """The outbox rows as the database holds them."""
    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.text(
                    "SELECT webhook, delivery_id, tenant_id, event, state, attempts, last_error"
                    " FROM webhook_outbox ORDER BY seq"
                )
            )
            return [dict(row) for row in rows.mappings()]
    finally:
        engine.dispose()


def wait_for_rows(
    database_url: str, check: Callable[[list[dict[str, Any]]], bool], what: str
) -> list[dict[str, Any]]:
    wait_until(lambda: check(outbox(database_url)), what)
    return outbox(database_url)


def request_refund(stubs: Stubs, tenant: str) -> tuple[str, str]:
    """(instance_id, action_id) of a refund that waits for a human."""
    instance_id = stubs.execution.InvokeAgent(envelope(tenant_id=tenant)).instance.instance_id
    answer = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=refund_action())
    )
    assert answer.outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    return instance_id, answer.action_id


def approve(stubs: Stubs, action_id: str) -> None:
    decided = decide(stubs, action_id, "alice", reason="checked the order")
    assert decided.action.state == pb.ACTION_STATE_APPROVED


def tenant() -> str:
    return f"tenant_wh_{uuid.uuid4().hex[:8]}"


# -- end to end --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_waiting_and_decided_actions_are_posted_signed_and_filtered(
    kind: str,
    make_database: Callable[[str], str],
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    acme, other = tenant(), tenant()
    hooks = [
        hook("all", receiver.url("/all")),
        {
            "name": "acme-only",
            "url": receiver.url("/acme"),
            "secret_env": "TEST_WEBHOOK_KEY",
            "tenants": [acme],
        },
        hook("chat", receiver.url("/slack"), format="slack", events=["requested"]),
        hook("elsewhere", receiver.url("/elsewhere"), gates=["GATE_ELSEWHERE"]),
        hook("withdrawn", receiver.url("/withdrawn"), events=["cancelled"]),
    ]
    url = make_database(kind)
    env = {"TEST_WEBHOOK_KEY": "another-key-0123456789"}
    with ServerProcess(url, tmp_path, "--config", str(config(tmp_path, hooks)), env=env) as server:
        stubs = server.stubs()
        acme_instance, acme_action = request_refund(stubs, acme)
        other_instance, other_action = request_refund(stubs, other)

        requested = payloads(receiver.wait_for("/all", 2))
        assert {p["action_id"] for p in requested} == {acme_action, other_action}
        first = next(p for p in requested if p["action_id"] == acme_action)
        assert first["type"] == "approval.requested"
        assert first["tenant_id"] == acme and first["instance_id"] == acme_instance
        assert first["tool"] == "adp_payments.issue_refund"
        assert first["gate_id"] == "GATE_DEFAULT" and first["gate_ids"] == ["GATE_DEFAULT"]
        assert first["action_state"] == "WAITING_FOR_HUMAN" and first["actor"] == "policy"
        assert first["cursor"] >= 1 and first["revision"] == 2
        assert datetime.fromisoformat(first["time"]).tzinfo is not None
        for request in receiver.at("/all"):
            assert request.headers["Content-Type"] == "application/json"
            sent = json.loads(request.body)
            assert request.headers["Signoff-Delivery"] == sent["delivery_id"]
            assert request.headers["Signoff-Event"] == "approval.requested"
            # What the action does never leaves: no params, no order, no amount.
            assert "params" not in sent and b"ord_881" not in request.body
            assert b"4200" not in request.body

        approve(stubs, acme_action)
        decided = [p for p in payloads(receiver.wait_for("/all", 3)) if p not in requested]
        assert [(p["type"], p["action_id"]) for p in decided] == [("approval.decided", acme_action)]
        assert decided[0]["actor"] == "alice" and decided[0]["action_state"] == "APPROVED"
        assert decided[0]["gate_ids"] == ["GATE_DEFAULT"]
        assert decided[0]["cursor"] > first["cursor"]

        # The tenant filter, with the key from the environment.
        acme_only = payloads(receiver.wait_for("/acme", 2), "another-key-0123456789")
        acme_only.sort(key=lambda p: p["cursor"])  # arrival order is not promised
        assert [(p["type"], p["tenant_id"]) for p in acme_only] == [
            ("approval.requested", acme),
            ("approval.decided", acme),
        ]
        with pytest.raises(WebhookError, match="signature"):
            payloads(receiver.at("/acme"))  # signed with its own key, not the other one

        # Slack: what waits, where, and the command that decides it.
        slack = [json.loads(r.body) for r in receiver.wait_for("/slack", 2)]
        assert all(set(message) == {"text", "blocks"} for message in slack)
        message = next(m for m in slack if acme in m["text"])
        assert (
            "Approval needed" in message["text"] and "adp_payments.issue_refund" in message["text"]
        )
        blocks = json.dumps(message["blocks"])
        assert f"signoff approve {acme_action} --reason" in blocks
        assert acme_instance in blocks and "GATE_DEFAULT" in blocks

        # Opt-in events: the instance is cancelled while its action waits.
        stubs.execution.CancelInstance(
            execution_pb.CancelInstanceRequest(instance_id=other_instance, reason="duplicate")
        )
        [cancelled] = payloads(receiver.wait_for("/withdrawn", 1))
        assert (cancelled["type"], cancelled["action_id"]) == ("approval.cancelled", other_action)
        assert cancelled["action_state"] == "CANCELLED"

        rows = wait_for_rows(
            url, lambda rows: all(r["state"] == "DELIVERED" for r in rows), "all delivered"
        )
        by_hook = {name: [r for r in rows if r["webhook"] == name] for name in ("all", "chat")}
        assert len(by_hook["all"]) == 3 and len(by_hook["chat"]) == 2  # chat: requested only
        assert len([r for r in rows if r["webhook"] == "withdrawn"]) == 1
        assert not [r for r in rows if r["webhook"] == "elsewhere"]  # gate filter: none
        assert not receiver.at("/elsewhere")
        assert {r["tenant_id"] for r in rows if r["webhook"] == "acme-only"} == {acme}


def short_gates_policy(tmp_path: Path) -> Path:
    """The open bundle, with gates that time out after a second: escalate, then expire."""
    bundle = tmp_path / "short-gates"
    shutil.copytree(OPEN_POLICY, bundle)
    (bundle / "gates.yaml").write_text(
        yaml.safe_dump(
            {
                "gates": {
                    "GATE_DEFAULT": {
                        "approvers": {"principals": ["*"]},
                        "ttl": "1s",
                        "on_timeout": "escalate",
                        "escalate_to": "GATE_LATE",
                    },
                    "GATE_LATE": {"approvers": {"principals": ["*"]}, "ttl": "1s"},
                }
            }
        )
    )
    return bundle


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_escalation_and_expiry_are_posted_to_the_gates_that_want_them(
    kind: str, make_database: Callable[[str], str], tmp_path: Path, receiver: Receiver
) -> None:
    hooks = [
        hook("all", receiver.url("/all")),
        hook("late", receiver.url("/late"), gates=["GATE_LATE"]),
    ]
    with ServerProcess(
        make_database(kind),
        tmp_path,
        "--config",
        str(config(tmp_path, hooks)),
        "--timer-interval",
        "0.2",
        policy=short_gates_policy(tmp_path),
    ) as server:
        _, action_id = request_refund(server.stubs(), tenant())
        seen = payloads(receiver.wait_for("/all", 3))
        assert sorted((p["type"], p["gate_id"], p["action_state"]) for p in seen) == [
            ("approval.escalated", "GATE_LATE", "WAITING_FOR_HUMAN"),
            ("approval.expired", "GATE_LATE", "EXPIRED"),
            ("approval.requested", "GATE_DEFAULT", "WAITING_FOR_HUMAN"),
        ]
        assert all(p["action_id"] == action_id for p in seen)
        assert {p["actor"] for p in seen if p["type"] != "approval.requested"} == {"timer"}
        late = payloads(receiver.wait_for("/late", 2))
        assert sorted(p["type"] for p in late) == ["approval.escalated", "approval.expired"]


def test_failed_deliveries_are_retried_with_growing_delays_then_given_up(
    make_database: Callable[[str], str], tmp_path: Path
) -> None:
    receiver = Receiver(answers={"/flaky": [500, 500], "/broken": [503] * 10})
    hooks = [hook("flaky", receiver.url("/flaky")), hook("broken", receiver.url("/broken"))]
    options = {"webhook_retry_initial": 0.5, "webhook_max_attempts": 3}
    url = make_database("sqlite")
    server = ServerProcess(url, tmp_path, "--config", str(config(tmp_path, hooks, **options)))
    try:
        with server:
            request_refund(server.stubs(), tenant())
            attempts = receiver.wait_for("/flaky", 3)
            rows = wait_for_rows(
                url, lambda rows: {r["state"] for r in rows} == {"DELIVERED", "FAILED"}, "both"
            )
            # One notification, the same delivery id and body each time, signed each time.
            assert len({a.headers["Signoff-Delivery"] for a in attempts}) == 1
            assert len({a.body for a in attempts}) == 1
            assert len(payloads(attempts)) == 3
            # The waits double: about 0.5 s, then about 1 s (each up to a quarter shorter).
            first_wait = attempts[1].time - attempts[0].time
            second_wait = attempts[2].time - attempts[1].time
            assert first_wait >= 0.375 and second_wait >= 0.75
            flaky = next(r for r in rows if r["webhook"] == "flaky")
            assert (flaky["state"], flaky["attempts"], flaky["last_error"]) == (
                "DELIVERED",
                3,
                "",
            )
            # The receiver that always fails: max attempts, then FAILED, kept and logged.
            broken = next(r for r in rows if r["webhook"] == "broken")
            assert (broken["state"], broken["attempts"]) == ("FAILED", 3)
            assert broken["last_error"] == "HTTP 503"
            assert len(receiver.at("/broken")) == 3
        log = server.log_path.read_text()
        assert "giving up" in log and broken["delivery_id"] in log
        assert SECRET not in log and "sha256=" not in log
    finally:
        receiver.close()


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_sent_and_failed_notifications_are_removed_after_the_retention(
    kind: str, make_database: Callable[[str], str], tmp_path: Path
) -> None:
    receiver = Receiver(answers={"/broken": [503] * 10})
    hooks = [hook("ok", receiver.url("/ok")), hook("broken", receiver.url("/broken"))]
    options = {"webhook_retry_initial": 0.2, "webhook_max_attempts": 2, "webhook_retention": 1}
    url = make_database(kind)
    server = ServerProcess(url, tmp_path, "--config", str(config(tmp_path, hooks, **options)))
    try:
        with server:
            # A day-old row of a webhook no longer configured: PENDING rows are never removed.
            engine = sqlalchemy.create_engine(url)
            long_ago = datetime.now(UTC) - timedelta(days=1)
            with engine.begin() as connection:
                connection.execute(
                    sqlalchemy.insert(schema.webhook_outbox).values(
                        delivery_id="whd_unsent",
                        webhook="gone",
                        tenant_id="t",
                        event="requested",
                        action_id="act_x",
                        body="{}",
                        state="PENDING",
                        attempts=0,
                        next_attempt=long_ago,
                        create_time=long_ago,
                        last_error="",
                    )
                )
            engine.dispose()
            request_refund(server.stubs(), tenant())
            receiver.wait_for("/ok", 1)
            receiver.wait_for("/broken", 2)  # the last attempt: FAILED
            rows = wait_for_rows(url, lambda rows: len(rows) == 1, "sent and FAILED rows removed")
            assert (rows[0]["delivery_id"], rows[0]["state"]) == ("whd_unsent", "PENDING")
        assert "sent or FAILED notifications past retention" in server.log_path.read_text()
    finally:
        receiver.close()


def free_port() -> int:
    """A loopback port where nothing listens (yet)."""
    probe = Receiver()
    probe.close()
    return probe.port


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_decisions_do_not_wait_for_a_receiver_that_is_down_and_nothing_is_lost(
    kind: str, make_database: Callable[[str], str], tmp_path: Path
) -> None:
    port = free_port()
    hooks = [hook("ops", f"http://127.0.0.1:{port}/ops")]
    options = {"webhook_retry_initial": 0.2, "webhook_retry_max": 1.0, "webhook_timeout": 2}
    url = make_database(kind)
    server = ServerProcess(url, tmp_path, "--config", str(config(tmp_path, hooks, **options)))
    with server:
        # The receiver is down: the decisions succeed all the same.
        stubs = server.stubs()
        _, action_id = request_refund(stubs, tenant())
        approve(stubs, action_id)
        wait_for_rows(
            url, lambda rows: len(rows) == 2 and all(r["attempts"] >= 2 for r in rows), "retries"
        )
        receiver = Receiver(port)
        try:
            arrived = payloads(receiver.wait_for("/ops", 2))
            assert {(p["type"], p["action_id"]) for p in arrived} == {
                ("approval.requested", action_id),
                ("approval.decided", action_id),
            }
            assert {p["delivery_id"] for p in arrived} == {r["delivery_id"] for r in outbox(url)}
        finally:
            receiver.close()

        # Down again, and the server is killed while a notification waits for its retry.
        _, late_action = request_refund(stubs, tenant())
        wait_for_rows(url, lambda rows: len(rows) == 3 and rows[2]["attempts"] >= 1, "a try")
        server.stop(signal.SIGKILL)
    assert outbox(url)[2]["state"] == "PENDING"
    receiver = Receiver(port)
    try:
        with server:  # the same database, a new process
            [arrived] = payloads(receiver.wait_for("/ops", 1))
            assert (arrived["type"], arrived["action_id"]) == ("approval.requested", late_action)
            assert arrived["delivery_id"] == outbox(url)[2]["delivery_id"]
    finally:
        receiver.close()


def test_replicas_on_one_database_deliver_each_notification_once(
    make_database: Callable[[str], str], tmp_path: Path
) -> None:
    """Two servers on one PostgreSQL database retry the same rows of a receiver that is
    down; when it comes up, each notification arrives once (a claim is one replica's)."""
    port = free_port()
    hooks = [hook("ops", f"http://127.0.0.1:{port}/ops")]
    options = {"webhook_retry_initial": 0.1, "webhook_retry_max": 0.3}
    url = make_database("postgresql")
    path = str(config(tmp_path, hooks, **options))
    with (
        ServerProcess(url, tmp_path, "--config", path) as first,
        ServerProcess(url, tmp_path, "--config", path) as second,
    ):
        actions = [request_refund(replica.stubs(), tenant())[1] for replica in (first, second) * 3]
        wait_for_rows(url, lambda rows: all(r["attempts"] >= 2 for r in rows), "retries")
        receiver = Receiver(port)
        try:
            wait_for_rows(
                url, lambda rows: all(r["state"] == "DELIVERED" for r in rows), "delivered"
            )
            ids = [request.headers["Signoff-Delivery"] for request in receiver.at("/ops")]
            assert sorted(ids) == sorted(r["delivery_id"] for r in outbox(url))
            assert {p["action_id"] for p in payloads(receiver.at("/ops"))} == set(actions)
        finally:
            receiver.close()


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"url": "ftp://example.com/x"}, "webhooks.0.url: must be an http:// or https:// URL"),
        ({"secret": None}, "webhooks.0: give the signing key as secret or as secret_env"),
        ({"secret": "short"}, "webhooks.0.secret: must be 16 characters or more"),
        (
            {"secret": None, "secret_env": "NO_SUCH_VARIABLE_HERE"},
            "webhooks.0.secret_env: environment variable NO_SUCH_VARIABLE_HERE must hold",
        ),
        ({"format": "xml"}, "webhooks.0.format: Input should be 'json', 'slack' or 'slack_inter"),
        ({"events": ["approved"]}, "webhooks.0.events.0: Input should be 'requested'"),
        ({"colour": "red"}, "webhooks.0.colour: Extra inputs are not permitted"),
    ],
)
def test_a_bad_webhook_entry_is_named(entry: dict[str, Any], problem: str, tmp_path: Path) -> None:
    good = hook("ops", "https://hooks.example.com/signoff")
    path = config(tmp_path, [{k: v for k, v in {**good, **entry}.items() if v is not None}])
    with pytest.raises(ConfigError) as raised:
        load_options(path, {}, environ={})
    assert problem in str(raised.value) and f"config file {path}" in str(raised.value)
    assert SECRET not in str(raised.value)


def test_webhook_names_are_unique(tmp_path: Path) -> None:
    twice = [hook("ops", "http://127.0.0.1:9/a"), hook("ops", "http://127.0.0.1:9/b")]
    with pytest.raises(ConfigError, match=r"webhook names must be unique.*'ops'"):
        load_options(config(tmp_path, twice), {}, environ={})


def test_serve_refuses_to_start_on_a_bad_webhook(tmp_path: Path) -> None:
    bad = config(tmp_path, [{"name": "ops", "url": "hooks.example.com", "secret": SECRET}])
    result = subprocess.run(
        [sys.executable, "-m", "signoff.cli", "serve", "--config", str(bad), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "webhooks.0.url: must be an http:// or https:// URL with a host" in result.stderr
    assert "signoff listening" not in result.stdout


# -- the pure parts: matching, payloads, delays ----------------------------------------------


def change(kind: ApprovalChangeKind, gate_id: str = "", **fields: Any) -> ApprovalChange:
    values: dict[str, Any] = {
        "tenant_id": "tenant_a",
        "cursor": 7,
        "kind": kind,
        "action_id": "act_1",
        "instance_id": "ins_1",
        "revision": 3,
        "action_state": ActionState.WAITING_FOR_HUMAN,
        "tool": "adp_payments.issue_refund",
        "gate_id": gate_id,
        "actor": "policy",
        "time": datetime(2026, 5, 4, 9, 30, tzinfo=UTC),
    }
    return ApprovalChange(**{**values, **fields})


def test_which_changes_a_webhook_wants() -> None:
    everything = Webhook("all", "http://x", b"k")
    finance = Webhook("finance", "http://x", b"k", gates=frozenset({"GATE_FINANCE"}))
    tenant_b = Webhook("b", "http://x", b"k", tenants=frozenset({"tenant_b"}))
    votes = Webhook("votes", "http://x", b"k", events=frozenset({"voted"}))
    requested = change(ApprovalChangeKind.REQUESTED)
    gates = webhooks.change_gates(requested, ["GATE_FINANCE", "GATE_LEGAL"])
    assert gates == ["GATE_FINANCE", "GATE_LEGAL"]
    assert webhooks.wants(everything, requested, gates)
    assert webhooks.wants(finance, requested, gates)
    assert not webhooks.wants(finance, requested, ["GATE_LEGAL"])
    assert not webhooks.wants(tenant_b, requested, gates)
    assert not webhooks.wants(votes, requested, gates)
    # A change that names its gate is about that gate (an escalation: the new one).
    escalated = change(ApprovalChangeKind.ESCALATED, "GATE_DIRECTOR")
    assert webhooks.change_gates(escalated, ["GATE_FINANCE", "GATE_DIRECTOR"]) == ["GATE_DIRECTOR"]
    voted = change(ApprovalChangeKind.VOTED, "GATE_A,GATE_B")
    assert webhooks.change_gates(voted, []) == ["GATE_A", "GATE_B"]
    assert not webhooks.wants(everything, voted, ["GATE_A"])  # voted is opt-in
    assert webhooks.wants(votes, voted, ["GATE_A"])


def test_slack_messages_say_what_waits_and_what_was_decided() -> None:
    waiting = webhooks.slack_payload(change(ApprovalChangeKind.REQUESTED), ["GATE_FINANCE"])
    assert waiting["text"].startswith(":hourglass_flowing_sand: Approval needed")
    assert "signoff approve act_1 --reason" in json.dumps(waiting["blocks"])
    decided = webhooks.slack_payload(
        change(
            ApprovalChangeKind.DECIDED,
            action_state=ActionState.REJECTED,
            actor="bob <admin>",
        ),
        ["GATE_FINANCE"],
    )
    assert "was REJECTED by bob &lt;admin&gt;" in decided["text"]
    assert "signoff approve" not in json.dumps(decided["blocks"])  # nothing waits any more


def test_retry_delays_double_up_to_the_maximum_with_jitter_below() -> None:
    policy = RetryPolicy(initial=1.0, maximum=60.0)
    assert [webhooks.retry_delay(n, policy, lambda: 0.0) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert webhooks.retry_delay(10, policy, lambda: 0.0) == 60.0
    assert webhooks.retry_delay(500, policy, lambda: 0.0) == 60.0
    assert webhooks.retry_delay(2, policy, lambda: 1.0) == 1.5  # at most a quarter shorter


# -- the receivers' helper -------------------------------------------------------------------


def signed(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    return webhooks.headers(secret.encode(), "whd_1", "requested", timestamp, body)


BODY = json.dumps({"delivery_id": "whd_1", "type": "approval.requested"}).encode()


def test_verify_accepts_a_fresh_signed_request() -> None:
    headers = {name.lower(): value for name, value in signed(BODY, 1_000_000).items()}
    assert verify(BODY, headers, SECRET, now=lambda: 1_000_100)["delivery_id"] == "whd_1"
    assert verify(BODY, signed(BODY, 1_000_000), SECRET.encode(), now=lambda: 999_990)


@pytest.mark.parametrize(
    ("body", "headers", "secret", "now", "problem"),
    [
        (BODY + b" ", signed(BODY, 1_000_000), SECRET, 1_000_000, "signature does not match"),
        (BODY, signed(BODY, 1_000_000), "another-secret-0123", 1_000_000, "signature"),
        (BODY, signed(BODY, 1_000_000), SECRET, 1_000_301, "timestamp is 301s old"),
        (BODY, signed(BODY, 1_000_000), SECRET, 999_000, "1000s in the future"),
        (
            BODY,
            {**signed(BODY, 1_000_000), "Signoff-Timestamp": "1000001"},
            SECRET,
            1_000_000,
            "signature does not match",
        ),
        (BODY, {"Signoff-Timestamp": "1000000"}, SECRET, 1_000_000, "missing header"),
        (
            BODY,
            {**signed(BODY, 1_000_000), "Signoff-Timestamp": "soon"},
            SECRET,
            1_000_000,
            "not Unix seconds",
        ),
        (b"[1]", signed(b"[1]", 1_000_000), SECRET, 1_000_000, "not a JSON object"),
    ],
)
def test_verify_refuses_altered_foreign_or_replayed_requests(
    body: bytes, headers: dict[str, str], secret: str, now: int, problem: str
) -> None:
    with pytest.raises(WebhookError, match=problem):
        verify(body, headers, secret, now=lambda: now)
