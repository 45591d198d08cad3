"""Approvals in Slack: a real signoff server posts to, and takes clicks from, Slack.

Slack's Web API is played by a stand-in on loopback that speaks its wire format (JSON or
form bodies with a bearer token, `{"ok": ...}` answers) and records each call. The tests
send button clicks to the server exactly as Slack does: a form with one `payload` field,
signed with the app's signing secret (X-Slack-Signature v0, X-Slack-Request-Timestamp).
"""

import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
import sqlalchemy
import yaml

from signoff.auth.authenticators import load_auth_config
from signoff.config import ConfigError, load_options
from signoff.slack.callbacks import BadCallback, parse_click
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from tests.support import (
    AUTH_CONFIG,
    OPEN_POLICY,
    ServerProcess,
    Stubs,
    decide,
    envelope,
    events,
    refund_action,
)

PATIENCE = 60.0  # the machine is shared and noisy
BOT_TOKEN = "xoxb-test-0000-signoff-bot"
SIGNING_SECRET = "slack-signing-secret-0123456789abcdef"
TEAM = "T0SIGNOFF"
CHANNEL = "C0APPROVALS"
CONSOLE = "https://signoff.example.test"
# Slack users, as the auth config maps them.
ALICE, CAROL, USER_OF_INSTANCE, STRANGER = "U0ALICE", "U0CAROL", "U0CUSTOMER", "U0STRANGER"


# -- a stand-in for Slack's Web API ---------------------------------------------------------


@dataclass(frozen=True)
class Call:
    method: str
    args: dict[str, Any]
    authorization: str


class SlackWebApi:
    """Slack's Web API on loopback: POST /api/<method> with JSON or a form, a bearer token;
    answers as Slack does (HTTP 200, `ok`, `error`). `fail` makes the next calls of a method
    answer an error (with the HTTP status given)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.fail: dict[str, list[tuple[int, str]]] = {}
        self._lock = threading.Lock()
        self._ts = 0
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                kind = self.headers.get("Content-Type", "")
                if kind.startswith("application/json"):
                    args = json.loads(raw or b"{}")
                else:
                    args = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                    if isinstance(args.get("blocks"), str):
                        args["blocks"] = json.loads(args["blocks"])
                method = self.path.removeprefix("/api/")
                status, answer = api.answer(method, args, self.headers.get("Authorization", ""))
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, method: str, args: dict[str, Any], authorization: str) -> tuple[int, Any]:
        with self._lock:
            if authorization != f"Bearer {BOT_TOKEN}":
                return 200, {"ok": False, "error": "invalid_auth"}
            failing = self.fail.get(method)
            if failing:
                status, error = failing.pop(0)
                return status, {"ok": False, "error": error}
            self.calls.append(Call(method, args, authorization))
            self._ts += 1
            ts = f"{int(time.time())}.{self._ts:06d}"
            if method == "chat.postMessage":
                return 200, {"ok": True, "channel": args["channel"], "ts": ts, "message": args}
            if method == "chat.update":
                return 200, {"ok": True, "channel": args["channel"], "ts": args["ts"]}
            if method == "chat.delete":
                return 200, {"ok": True, "channel": args["channel"], "ts": args["ts"]}
            if method == "chat.postEphemeral":
                return 200, {"ok": True, "message_ts": ts}
            return 200, {"ok": False, "error": "unknown_method"}

    def of(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_for(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + PATIENCE
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"waited {PATIENCE}s for {what}"
        time.sleep(0.05)


def text_of(blocks: list[dict[str, Any]]) -> str:
    """Every text of a message's blocks, for looking things up in it."""
    return json.dumps(blocks, ensure_ascii=False)


# -- a server with a Slack app ----------------------------------------------------------------


def policy_bundle(directory: Path) -> Path:
    """The open bundle, routing by tool: refunds to GATE_DEFAULT, `pair.approve` to a gate
    of two approvers, `short.lived` to a gate that expires after a second, `alice.only` to
    a gate only alice may approve."""
    bundle = directory / "slack-policy"
    shutil.copytree(OPEN_POLICY, bundle)
    (bundle / "open.rego").write_text(
        """package signoff

import rego.v1

gate_of := {"pair.approve": "GATE_PAIR", "short.lived": "GATE_SHORT", "alice.only": "GATE_ALICE"}

findings contains {"rule": "ALLOW_LOCAL_ACTIONS", "effect": "allow"} if {
\tinput.action.risk_class in {"READ_ONLY", "LOCAL_WRITE"}
}

findings contains {
\t"rule": "GATE_OUTWARD_ACTIONS",
\t"effect": "require_approval",
\t"gate": object.get(gate_of, input.action.tool, "GATE_DEFAULT"),
\t"reason": sprintf("%v actions need a human approval", [input.action.risk_class]),
} if {
\tinput.action.risk_class in {"NETWORK", "DELEGATED", "DESTRUCTIVE"}
}

decision_key := sprintf("%v.%v", [input.envelope.input.intent, input.action.tool])
"""
    )
    (bundle / "gates.yaml").write_text(
        yaml.safe_dump(
            {
                "gates": {
                    "GATE_DEFAULT": {"approvers": {"principals": ["*"]}, "ttl": "24h"},
                    "GATE_PAIR": {"approvers": {"principals": ["*"]}, "quorum": 2, "ttl": "24h"},
                    "GATE_SHORT": {"approvers": {"principals": ["*"]}, "ttl": "1s"},
                    "GATE_ALICE": {"approvers": {"principals": ["alice"]}, "ttl": "24h"},
                }
            }
        )
    )
    return bundle


def auth_config(directory: Path) -> Path:
    """The tests' JWT settings, and Slack users mapped to principals."""
    spec = yaml.safe_load(AUTH_CONFIG.read_text())
    spec["jwt"]["jwks_file"] = str(AUTH_CONFIG.parent / spec["jwt"]["jwks_file"])
    spec["slack"] = {
        "team_id": TEAM,
        "users": {
            ALICE: {"id": "alice", "tenant": "*", "roles": ["approver"]},
            CAROL: {"id": "carol", "tenant": "*"},
            # The instance's own user may not approve its actions (separation of duties).
            USER_OF_INSTANCE: {"id": "usr_771", "tenant": "*"},
        },
    }
    path = directory / "auth-slack.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def serve_config(directory: Path, api: SlackWebApi) -> Path:
    path = directory / "signoff-slack.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "webhooks": [
                    {"name": "approvals", "format": "slack_interactive", "channel": CHANNEL}
                ],
                "slack": {
                    "bot_token_env": "TEST_SLACK_BOT_TOKEN",
                    "signing_secret_env": "TEST_SLACK_SIGNING_SECRET",
                    "api_url": api.url,
                    "console_url": CONSOLE,
                },
                "webhook_retry_initial": 0.2,
                "webhook_retry_max": 1,
                "timer_interval": 0.2,
            }
        )
    )
    return path


@dataclass
class Slack:
    server: ServerProcess
    api: SlackWebApi
    database_url: str

    @property
    def stubs(self) -> Stubs:
        return self.server.stubs()

    def callback(
        self, body: bytes, *, timestamp: int | None = None, secret: str = SIGNING_SECRET
    ) -> httpx.Response:
        return post_signed(self.server.http_url, body, timestamp=timestamp, secret=secret)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def slack(
    request: pytest.FixtureRequest,
    make_database: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Slack]:
    directory = tmp_path_factory.mktemp("slack")
    url = make_database(request.param)
    api = SlackWebApi()
    env = {"TEST_SLACK_BOT_TOKEN": BOT_TOKEN, "TEST_SLACK_SIGNING_SECRET": SIGNING_SECRET}
    server = ServerProcess(
        url,
        directory,
        "--config",
        str(serve_config(directory, api)),
        policy=policy_bundle(directory),
        auth_config=auth_config(directory),
        env=env,
    )
    with server:
        yield Slack(server, api, url)
    api.close()
    assert BOT_TOKEN not in server.log_path.read_text(), "the bot token was logged"
    assert SIGNING_SECRET not in server.log_path.read_text(), "the signing secret was logged"


# -- Slack's side of a click --------------------------------------------------------------


def sign(body: bytes, timestamp: int, secret: str = SIGNING_SECRET) -> str:
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def post_signed(
    http_url: str, body: bytes, *, timestamp: int | None = None, secret: str = SIGNING_SECRET
) -> httpx.Response:
    """A callback as Slack sends it: a form, signed, with the time of signing."""
    when = int(time.time()) if timestamp is None else timestamp
    return httpx.post(
        f"{http_url}/slack/actions",
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(when),
            "X-Slack-Signature": sign(body, when, secret),
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        },
        timeout=10,
    )


def button(message: Call, action_id: str) -> dict[str, Any]:
    for block in message.args["blocks"]:
        for element in block.get("elements", []):
            if element.get("action_id") == action_id:
                return dict(element)
    raise AssertionError(f"no button {action_id} in the message")


def click_body(
    message: Call, user: str, action_id: str = "signoff_approve", *, value: str | None = None
) -> bytes:
    """The block_actions payload Slack sends when `user` clicks a button of `message`."""
    pressed = button(message, action_id)
    ts = message.args["ts"]
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM},
        "api_app_id": "A0SIGNOFF",
        "token": "verification-token-unused",
        "container": {
            "type": "message",
            "message_ts": ts,
            "channel_id": CHANNEL,
            "is_ephemeral": False,
        },
        "trigger_id": f"{uuid.uuid4().int % 10**12}.{uuid.uuid4().int % 10**12}",
        "team": {"id": TEAM, "domain": "signoff-test"},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": CHANNEL, "name": "approvals"},
        "message": {"type": "message", "ts": ts, "text": message.args["text"]},
        "state": {"values": {}},
        "response_url": "https://hooks.slack.com/actions/T0SIGNOFF/1/unused",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "signoff_decide",
                "text": pressed["text"],
                "value": pressed["value"] if value is None else value,
                "style": pressed.get("style", ""),
                "type": "button",
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


# -- helpers on signoff's side ----------------------------------------------------------


def request(stubs: Stubs, tool: str = "adp_payments.issue_refund") -> tuple[str, Any]:
    """A new instance and its action waiting for a human: (instance_id, the answer)."""
    instance = stubs.execution.InvokeAgent(envelope(tenant_id=f"tenant_{uuid.uuid4().hex[:8]}"))
    proposal = refund_action()
    proposal.tool = tool
    answer = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(
            instance_id=instance.instance.instance_id, action=proposal
        )
    )
    assert answer.outcome == pb.OUTCOME_WAITING_FOR_HUMAN
    return instance.instance.instance_id, answer


def posted(slack: Slack, action_id: str) -> Call:
    """The message posted for the action (the message carries its ts as Slack gave it)."""
    found = wait_for(
        lambda: [
            c for c in slack.api.of("chat.postMessage") if action_id in text_of(c.args["blocks"])
        ],
        f"the message of {action_id}",
    )
    assert len(found) == 1, "one message per action"
    ts = message_ts(slack, action_id)
    return Call(found[0].method, {**found[0].args, "ts": ts}, found[0].authorization)


def message_ts(slack: Slack, action_id: str) -> str:
    """Where signoff recorded the action's message (the ts Slack answered)."""

    def recorded() -> str:
        engine = sqlalchemy.create_engine(slack.database_url)
        try:
            with engine.connect() as connection:
                row = connection.execute(
                    sqlalchemy.text("SELECT channel, ts FROM slack_messages WHERE action_id = :a"),
                    {"a": action_id},
                ).first()
        finally:
            engine.dispose()
        return "" if row is None else (row.ts if row.channel == CHANNEL else "")

    return str(wait_for(recorded, f"the message of {action_id} to be recorded"))


def updates(slack: Slack, ts: str) -> list[str]:
    return [text_of(c.args["blocks"]) for c in slack.api.of("chat.update") if c.args["ts"] == ts]


def updated_with(slack: Slack, ts: str, *needles: str) -> str:
    """The first update of the message at `ts` that says all of `needles`."""
    return str(
        wait_for(
            lambda: next((u for u in updates(slack, ts) if all(n in u for n in needles)), ""),
            f"an update of {ts} saying {needles}",
        )
    )


def ephemeral_to(slack: Slack, user: str, after: int, *needles: str) -> str:
    def found() -> str:
        calls = slack.api.of("chat.postEphemeral")[after:]
        for call in calls:
            if call.args["user"] == user and all(n in call.args["text"] for n in needles):
                assert call.args["channel"] == CHANNEL
                return str(call.args["text"])
        return ""

    return str(wait_for(found, f"an ephemeral message to {user} saying {needles}"))


def votes(stubs: Stubs, instance_id: str) -> list[pb.Event]:
    listed = stubs.audit.ListEvents(audit_pb.ListEventsRequest(instance_id=instance_id)).events
    return [
        e
        for e in listed
        if e.type in (pb.EVENT_TYPE_ACTION_VOTED, pb.EVENT_TYPE_ACTION_DECIDED)
        and e.actor != "policy"
    ]


def ephemerals(slack: Slack) -> int:
    return len(slack.api.of("chat.postEphemeral"))


# -- the message ----------------------------------------------------------------------------


def test_a_waiting_action_is_posted_with_its_params_rules_gate_and_buttons(slack: Slack) -> None:
    _, answer = request(slack.stubs)
    action = answer.action
    message = posted(slack, answer.action_id)
    assert message.args["channel"] == CHANNEL
    assert message.authorization == f"Bearer {BOT_TOKEN}"
    shown = text_of(message.args["blocks"])
    for expected in (
        "adp_payments.issue_refund",
        "DESTRUCTIVE",
        "GATE_DEFAULT",
        "0 of 1 approvals",
        "GATE_OUTWARD_ACTIONS",  # the rule that matched
        "ord_881",  # the params
        "4200",
        action.action_sha256,
        "<!date^",  # the expiry, in each reader's time zone
    ):
        assert expected in shown, expected
    approve, reject = button(message, "signoff_approve"), button(message, "signoff_reject")
    assert json.loads(approve["value"]) == {
        "action_id": answer.action_id,
        "sha256": action.action_sha256,
    }
    assert approve["style"] == "primary" and reject["style"] == "danger"
    link = button(message, "signoff_open")
    assert link["url"] == f"{CONSOLE}/actions/{answer.action_id}"
    assert "Approval needed" in message.args["text"]


# -- clicks -----------------------------------------------------------------------------------


def test_an_approve_click_approves_the_waiting_agent_and_the_message_says_who(
    slack: Slack,
) -> None:
    stubs = slack.stubs
    instance_id, answer = request(stubs)
    message = posted(slack, answer.action_id)
    watched: list[pb.Event] = []

    def watch() -> None:
        stream = stubs.execution.WatchInstance(
            execution_pb.WatchInstanceRequest(
                instance_id=instance_id, after_revision=answer.revision
            ),
            timeout=PATIENCE,
        )
        for event in events(stream):
            watched.append(event)
            if event.type == pb.EVENT_TYPE_ACTION_DECIDED:
                stream.cancel()
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    before = ephemerals(slack)
    started = time.monotonic()
    answered = slack.callback(click_body(message, ALICE))
    assert answered.status_code == 200 and answered.content == b""
    assert time.monotonic() - started < 3, "Slack wants an answer within 3 seconds"
    watcher.join(PATIENCE)
    decided = [e for e in watched if e.type == pb.EVENT_TYPE_ACTION_DECIDED]
    assert decided and decided[0].action_state == pb.ACTION_STATE_APPROVED
    assert decided[0].actor == "alice"
    assert "approved in Slack by U0ALICE" in decided[0].reason
    shown = updated_with(slack, message.args["ts"], "Approved", f"<@{ALICE}>", "alice")
    assert "signoff_approve" not in shown, "a decided action has no buttons"
    ephemeral_to(slack, ALICE, before, "approval", "recorded")
    # The agent asks again and gets its grant.
    again = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=refund_action())
    )
    assert again.outcome == pb.OUTCOME_APPROVED and again.grant_token


def test_a_reject_click_rejects(slack: Slack) -> None:
    instance_id, answer = request(slack.stubs)
    message = posted(slack, answer.action_id)
    assert slack.callback(click_body(message, CAROL, "signoff_reject")).status_code == 200
    updated_with(slack, message.args["ts"], "Rejected", f"<@{CAROL}>", "carol")
    decided = votes(slack.stubs, instance_id)
    assert [(e.actor, e.action_state) for e in decided] == [("carol", pb.ACTION_STATE_REJECTED)]


def test_a_forged_or_stale_callback_is_refused_and_nothing_is_written(slack: Slack) -> None:
    instance_id, answer = request(slack.stubs)
    message = posted(slack, answer.action_id)
    body = click_body(message, ALICE)
    forged = slack.callback(body, secret="not-the-signing-secret-0123456789")
    assert forged.status_code == 401 and forged.json()["error"] == "invalid_signature"
    stale = slack.callback(body, timestamp=int(time.time()) - 301)  # signed, 5 min + 1 s ago
    assert stale.status_code == 401
    # Far enough ahead to stay over 5 minutes however long the call takes to arrive.
    future = slack.callback(body, timestamp=int(time.time()) + 360)
    assert future.status_code == 401
    unsigned = httpx.post(
        f"{slack.server.http_url}/slack/actions",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert unsigned.status_code == 401
    garbled = httpx.post(
        f"{slack.server.http_url}/slack/actions",
        content=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": "yesterday",
            "X-Slack-Signature": "v0=00",
        },
        timeout=10,
    )
    assert garbled.status_code == 401
    # An altered body under the signature of the original.
    when = int(time.time())
    altered = httpx.post(
        f"{slack.server.http_url}/slack/actions",
        content=body.replace(b"signoff_approve", b"signoff_reject"),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(when),
            "X-Slack-Signature": sign(body, when),
        },
        timeout=10,
    )
    assert altered.status_code == 401
    time.sleep(1)  # a vote would have been written by now
    assert votes(slack.stubs, instance_id) == []
    assert updates(slack, message.args["ts"]) == []


def test_a_replayed_callback_is_the_same_vote_not_a_second_one(slack: Slack) -> None:
    instance_id, answer = request(slack.stubs, tool="pair.approve")
    message = posted(slack, answer.action_id)
    body = click_body(message, ALICE)
    assert slack.callback(body).status_code == 200
    updated_with(slack, message.args["ts"], "1 of 2 approvals")
    for _ in range(2):  # Slack's retry, or someone replaying the signed request
        assert slack.callback(body).status_code == 200
    time.sleep(1)
    assert [e.actor for e in votes(slack.stubs, instance_id)] == ["alice"]
    # A second, new click of the same approver is refused: one approver votes once.
    before = ephemerals(slack)
    assert slack.callback(click_body(message, ALICE)).status_code == 200
    ephemeral_to(slack, ALICE, before, "already voted")
    assert [e.actor for e in votes(slack.stubs, instance_id)] == ["alice"]


def test_a_slack_user_who_is_not_mapped_is_told_and_nothing_is_recorded(slack: Slack) -> None:
    instance_id, answer = request(slack.stubs)
    message = posted(slack, answer.action_id)
    before = ephemerals(slack)
    assert slack.callback(click_body(message, STRANGER)).status_code == 200
    ephemeral_to(slack, STRANGER, before, "not an approver here")
    assert votes(slack.stubs, instance_id) == []


def test_separation_of_duties_bars_the_instances_own_user(slack: Slack) -> None:
    instance_id, answer = request(slack.stubs)
    message = posted(slack, answer.action_id)
    before = ephemerals(slack)
    assert slack.callback(click_body(message, USER_OF_INSTANCE)).status_code == 200
    ephemeral_to(slack, USER_OF_INSTANCE, before, "separation of duties", "not counted")
    assert votes(slack.stubs, instance_id) == []


def test_an_approver_the_gate_does_not_admit_is_refused(slack: Slack) -> None:
    instance_id, answer = request(slack.stubs, tool="alice.only")
    message = posted(slack, answer.action_id)
    before = ephemerals(slack)
    assert slack.callback(click_body(message, CAROL)).status_code == 200
    ephemeral_to(slack, CAROL, before, "not an approver of GATE_ALICE", "NOT_ELIGIBLE")
    assert votes(slack.stubs, instance_id) == []
    assert slack.callback(click_body(message, ALICE)).status_code == 200
    updated_with(slack, message.args["ts"], "Approved by", f"<@{ALICE}>")


def test_a_click_on_another_version_of_the_action_is_refused(slack: Slack) -> None:
    instance_id, answer = request(slack.stubs)
    message = posted(slack, answer.action_id)
    other = json.dumps({"action_id": answer.action_id, "sha256": "sha256:" + "0" * 64})
    before = ephemerals(slack)
    assert slack.callback(click_body(message, ALICE, value=other)).status_code == 200
    ephemeral_to(slack, ALICE, before, "changed since", "not counted")
    assert votes(slack.stubs, instance_id) == []


def test_a_click_after_the_decision_names_the_winner(slack: Slack) -> None:
    _, answer = request(slack.stubs)
    message = posted(slack, answer.action_id)
    decide(slack.server, answer.action_id, "dana", reason="done on the CLI")
    before = ephemerals(slack)
    assert slack.callback(click_body(message, ALICE, "signoff_reject")).status_code == 200
    ephemeral_to(slack, ALICE, before, "already decided", "dana")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"payload=%7Bnot+json", "application/x-www-form-urlencoded"),
        (b'{"type": "block_actions"}', "application/json"),
        (b"payload=" + b"%5B%5D", "application/x-www-form-urlencoded"),  # a list
        (b"other=1", "application/x-www-form-urlencoded"),
        (b"\xff\xfe", "application/x-www-form-urlencoded"),
        (
            b"payload=" + urlencode({"x": json.dumps({"type": "view_submission"})})[2:].encode(),
            "application/x-www-form-urlencoded",
        ),
        (
            b"payload="
            + urlencode(
                {
                    "x": json.dumps(
                        {
                            "type": "block_actions",
                            "team": {"id": TEAM},
                            "user": {"id": ALICE},
                            "container": {"channel_id": CHANNEL, "message_ts": "1.2"},
                            "actions": [
                                {
                                    "action_id": "signoff_approve",
                                    "value": "not json",
                                    "action_ts": "1.3",
                                }
                            ],
                        }
                    )
                }
            )[2:].encode(),
            "application/x-www-form-urlencoded",
        ),
    ],
)
def test_a_signed_but_malformed_callback_is_a_400(
    slack: Slack, body: bytes, content_type: str
) -> None:
    when = int(time.time())
    answered = httpx.post(
        f"{slack.server.http_url}/slack/actions",
        content=body,
        headers={
            "Content-Type": content_type,
            "X-Slack-Request-Timestamp": str(when),
            "X-Slack-Signature": sign(body, when),
        },
        timeout=10,
    )
    assert answered.status_code == 400, answered.text
    assert answered.json()["error"] == "bad_request"


# -- the message follows the action -----------------------------------------------------


def test_a_decision_made_elsewhere_updates_the_message(slack: Slack) -> None:
    _, answer = request(slack.stubs)
    message = posted(slack, answer.action_id)
    decide(slack.server, answer.action_id, "bob", reason="checked on the phone")
    shown = updated_with(slack, message.args["ts"], "Approved by", "bob", "checked on the phone")
    assert "signoff_approve" not in shown
    assert f"{CONSOLE}/actions/{answer.action_id}" in shown  # the link stays


def test_an_expired_action_updates_the_message(slack: Slack) -> None:
    _, answer = request(slack.stubs, tool="short.lived")
    message = posted(slack, answer.action_id)
    shown = updated_with(slack, message.args["ts"], "Expired", "Nobody decided in time")
    assert "signoff_approve" not in shown


def test_a_cancelled_instance_updates_the_message(slack: Slack) -> None:
    instance_id, answer = request(slack.stubs)
    message = posted(slack, answer.action_id)
    slack.stubs.execution.CancelInstance(
        execution_pb.CancelInstanceRequest(instance_id=instance_id, reason="customer withdrew")
    )
    shown = updated_with(slack, message.args["ts"], "Cancelled", "no longer waits")
    assert "signoff_approve" not in shown


def test_a_quorum_of_two_shows_its_progress(slack: Slack) -> None:
    instance_id, answer = request(slack.stubs, tool="pair.approve")
    message = posted(slack, answer.action_id)
    assert "0 of 2 approvals" in text_of(message.args["blocks"])
    assert slack.callback(click_body(message, ALICE)).status_code == 200
    first = updated_with(slack, message.args["ts"], "1 of 2 approvals", "approved by")
    assert "signoff_approve" in first, "still waiting: the buttons stay"
    assert slack.callback(click_body(message, CAROL)).status_code == 200
    updated_with(slack, message.args["ts"], "Approved by", f"<@{CAROL}>")
    assert [e.actor for e in votes(slack.stubs, instance_id)] == ["alice", "carol"]


def test_a_message_slack_refused_is_posted_again_later(slack: Slack) -> None:
    slack.api.fail["chat.postMessage"] = [(429, "ratelimited"), (200, "internal_error")]
    _, answer = request(slack.stubs)
    message = posted(slack, answer.action_id)
    assert not slack.api.fail["chat.postMessage"], "both failures were met, then it posted"
    assert answer.action_id in text_of(message.args["blocks"])


# -- configuration, and the parts without a server -----------------------------------------


def test_slack_configuration_is_checked(tmp_path: Path) -> None:
    hook = {"name": "approvals", "format": "slack_interactive", "channel": CHANNEL}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"webhooks": [hook]}))
    with pytest.raises(ConfigError, match="are slack_interactive: configure `slack`"):
        load_options(path, {}, environ={})
    path.write_text(
        yaml.safe_dump(
            {
                "webhooks": [{**hook, "url": "https://example.com/x"}],
                "slack": {"bot_token_env": "B", "signing_secret_env": "S"},
            }
        )
    )
    with pytest.raises(ConfigError) as raised:
        load_options(path, {}, environ={"B": BOT_TOKEN})
    assert "give it a channel, not a url" in str(raised.value)
    assert "environment variable S is not set" in str(raised.value)
    path.write_text(
        yaml.safe_dump(
            {
                "webhooks": [hook],
                "slack": {"bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET},
            }
        )
    )
    options = load_options(path, {}, environ={})
    assert options.slack is not None and options.slack.token() == BOT_TOKEN
    assert BOT_TOKEN not in repr(options) and SIGNING_SECRET not in repr(options)


def test_serve_refuses_slack_without_the_http_listener(tmp_path: Path) -> None:
    config = tmp_path / "signoff.yaml"
    config.write_text(
        yaml.safe_dump({"slack": {"bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET}})
    )
    options = {
        "--port": "0",
        "--config": str(config),
        "--database-url": f"sqlite:///{tmp_path}/x.db",
        "--policy": str(OPEN_POLICY),
        "--auth-config": str(auth_config(tmp_path)),
        "--http-port": "off",
    }
    result = subprocess.run(
        [sys.executable, "-m", "signoff.cli", "serve", *(p for o in options.items() for p in o)],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert result.returncode == 2, result.stderr
    assert "slack needs the HTTP listener" in result.stderr
    assert "listening" not in result.stdout
    assert BOT_TOKEN not in result.stderr and SIGNING_SECRET not in result.stderr


def test_the_auth_config_maps_slack_users_of_one_team(tmp_path: Path) -> None:
    config = load_auth_config(auth_config(tmp_path))
    assert config.slack is not None
    assert config.slack.principal(TEAM, ALICE) is not None
    assert config.slack.principal("T0ELSEWHERE", ALICE) is None
    assert config.slack.principal(TEAM, STRANGER) is None
    assert config.slack.slack_user("alice") == ALICE
    bad = tmp_path / "bad.yaml"
    spec = yaml.safe_load(auth_config(tmp_path).read_text())
    spec["slack"]["users"]["U0BOT"] = {"id": "bot", "tenant": "*", "kind": "agent"}
    bad.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="Slack users are humans"):
        load_auth_config(bad)


def test_a_link_click_is_nothing_to_do() -> None:
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM},
        "user": {"id": ALICE},
        "container": {"channel_id": CHANNEL, "message_ts": "1.2"},
        "actions": [{"action_id": "signoff_open", "action_ts": "1.3"}],
    }
    body = urlencode({"payload": json.dumps(payload)}).encode()
    assert parse_click(body, "application/x-www-form-urlencoded") is None
    with pytest.raises(BadCallback, match="x-www-form-urlencoded"):
        parse_click(body, "text/plain")
