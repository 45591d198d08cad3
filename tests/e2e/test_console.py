"""The approvers' console in a real browser (Debian's chromium, headless, driven by
Playwright) against a real server on loopback: OpenID Connect sign-in against a provider
the tests start (tests/oidc_provider.py), development sign-in with a printed token, the
live inbox, deciding (approve, reject, edited params), separation of duties, records; and
over plain HTTP what an unauthenticated or CSRF-less request gets.

SIGNOFF_CONSOLE_SCREENSHOTS=docs writes the screenshots docs/console.md shows."""

import os
import re
import shutil
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from signoff.auth.authenticators import (
    Authenticator,
    ClaimNames,
    ConsoleSettings,
    load_auth_config,
    token_sha256,
)
from signoff.domain.models import Principal, PrincipalKind
from signoff.v1 import approval_service_pb2 as approval_pb
from signoff.v1 import audit_service_pb2 as audit_pb
from signoff.v1 import execution_service_pb2 as execution_pb
from signoff.v1 import types_pb2 as pb
from signoff.web.console import console_routes
from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, OpenIdProvider, RunningProvider
from tests.support import (
    AUTH_CONFIG,
    EXAMPLE_POLICY,
    ServerProcess,
    Stubs,
    envelope,
    refund_action,
    waiting_refund,
)

playwright_sync = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TENANT = "tenant_acme_prod"
WAIT_MS = 30_000
USERS = {
    "fin_lead_1": {"tenant": TENANT, "roles": ["finance_lead", "approver"], "kind": "human"},
    "fin_lead_2": {"tenant": TENANT, "roles": ["finance_lead", "approver"], "kind": "human"},
    # The user of the tests' instances (envelope()): separation of duties bars them.
    "usr_771": {"tenant": TENANT, "roles": ["finance_lead", "approver"], "kind": "human"},
    "ops_admin": {"tenant": TENANT, "roles": ["admin"], "kind": "human"},
    "robot": {"tenant": TENANT, "roles": [], "kind": "agent"},
}
SCREENSHOTS = os.environ.get("SIGNOFF_CONSOLE_SCREENSHOTS", "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def provider() -> Iterator[OpenIdProvider]:
    with RunningProvider(OpenIdProvider(users=dict(USERS))) as running:
        yield running


@pytest.fixture(scope="module")
def console(
    provider: OpenIdProvider,
    database_kind: str,
    make_database: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    """A server (on each kind of database) whose auth config has the tests' JWTs and a
    console signing in at the loopback provider (the redirect URI names the HTTP port, so
    it is chosen first)."""
    directory = tmp_path_factory.mktemp("console")
    shutil.copy(AUTH_CONFIG.parent / "jwks.json", directory / "jwks.json")
    port = _free_port()
    config = directory / "auth.yaml"
    config.write_text(
        AUTH_CONFIG.read_text()
        + "console:\n  oidc:\n"
        + f"    issuer: {provider.issuer}\n    client_id: {CLIENT_ID}\n"
        + f"    client_secret: {CLIENT_SECRET}\n"
        + f"    redirect_uri: http://127.0.0.1:{port}/signin/callback\n"
    )
    # The last --http-port given wins over ServerProcess's own "0".
    process = ServerProcess(
        make_database(database_kind), directory, "--http-port", str(port),
        auth_config=config, policy=EXAMPLE_POLICY,
    )  # fmt: skip
    with process:
        yield process


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, dict[str, str]]]:
    """A development-mode server (no auth config): its printed tokens."""
    directory = tmp_path_factory.mktemp("console-dev")
    process = ServerProcess(f"sqlite:///{directory / 'signoff.db'}", directory, auth_config=None)
    with process:
        tokens = dict(re.findall(r"export SIGNOFF_(\w+)_TOKEN=(\S+)", "\n".join(process.banner)))
        yield process, tokens


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: scripts/setup-polyglot installs it")
        pytest.skip(f"no {CHROMIUM} (scripts/setup-polyglot installs it)")
    with playwright_sync.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    """A browser profile of its own (cookies), closed after the test."""
    made: list[Any] = []

    def new() -> Any:
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        ctx.set_default_timeout(WAIT_MS)
        made.append(ctx)
        return ctx

    yield new
    for ctx in made:
        ctx.close()


def oidc_sign_in(new_context: Any, server: ServerProcess, user: str, path: str = "/") -> Any:
    page = new_context().new_page()
    page.goto(server.http_url + path)
    page.wait_for_url(re.compile(r"/signin\?next="))
    page.click("#signin-oidc")
    page.fill("#username", user)
    page.click("#login")
    page.wait_for_url(server.http_url + path)
    page.wait_for_selector("#who")
    assert user in page.inner_text("#who")
    return page


def row(action_id: str) -> str:
    return f'tr[data-action-id="{action_id}"]'


class AgentWatch:
    """The agent's WatchInstance in a thread: every event until the action settles."""

    def __init__(self, stubs: Stubs, instance_id: str, action_id: str) -> None:
        self.events: list[pb.Event] = []
        self.call = stubs.execution.WatchInstance(
            execution_pb.WatchInstanceRequest(instance_id=instance_id, after_revision=0),
            timeout=120,
        )
        self.action_id = action_id
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for message in self.call:
                if message.HasField("event"):
                    self.events.append(message.event)
                    if (
                        message.event.action_id == self.action_id
                        and message.event.type == pb.EVENT_TYPE_ACTION_DECIDED
                    ):
                        return
        except grpc.RpcError:
            return

    def decided(self) -> pb.Event:
        self.thread.join(60)
        self.call.cancel()
        found = [e for e in self.events if e.type == pb.EVENT_TYPE_ACTION_DECIDED]
        assert found, [pb.EventType.Name(e.type) for e in self.events]
        return found[-1]


def email() -> pb.ProposedAction:
    action = pb.ProposedAction(
        tool_call_id="tc_mail", tool="crm.send_email", risk_class=pb.RISK_CLASS_NETWORK
    )
    action.params.update({"to": "customer@example.com", "template": "refund_issued"})
    return action


def record_of(stubs: Stubs, event: pb.Event) -> pb.DecisionRecord:
    """The decision record an ACTION_DECIDED event names (the test agent may read it)."""
    request = audit_pb.GetDecisionRecordRequest(record_id=event.record_id)
    return stubs.audit.GetDecisionRecord(request).record


def screenshot(page: Any, name: str, tmp_path: Path) -> None:
    target = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    page.screenshot(path=str(target / name), full_page=True)


# -- without a session ------------------------------------------------------------------


def test_pages_without_a_session_redirect_to_sign_in_and_show_nothing(
    console: ServerProcess,
) -> None:
    for path in ["/", "/actions/act_123?tenant=t", "/?tenant=tenant_acme_prod"]:
        answer = httpx.get(console.http_url + path, follow_redirects=False)
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/signin?next=")
        assert answer.text == ""
    page = httpx.get(console.http_url + "/signin")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text and 'id="signin-oidc"' in page.text
    assert 'id="token"' not in page.text  # no token sign-in outside development mode
    # Bad input gets a precise answer, never a server error.
    callback = httpx.get(console.http_url + "/signin/callback?state=forged&code=x")
    assert callback.status_code == 303 and "error=" in callback.headers["location"]
    assert "another%20browser" in callback.headers["location"]
    assert httpx.post(console.http_url + "/signin/token", data={"token": "t"}).status_code == 404
    signout = httpx.post(console.http_url + "/signout", content=b"{}")
    assert signout.status_code == 303  # no session: nothing to end
    # A session cookie that is not a session is no credential.
    answer = httpx.post(
        console.http_url + "/signoff.v1.ApprovalService/ListPendingApprovals",
        json={},
        headers={"x-signoff-csrf": "x", "cookie": "signoff_session=forged"},
    )
    assert answer.status_code == 401 and "sign in again" in answer.json()["message"]


def test_csrf_less_posts_are_refused(dev: tuple[ServerProcess, dict[str, str]]) -> None:
    server, tokens = dev
    with httpx.Client(base_url=server.http_url) as client:
        client.get("/signin")
        # Only a urlencoded form of bounded size is read.
        as_json = client.post("/signin/token", json={"token": tokens["APPROVER"]})
        assert as_json.status_code == 415
        huge = client.post("/signin/token", data={"token": "x" * 20_000, "csrf": "x"})
        assert huge.status_code == 413
        # The sign-in form itself needs its CSRF value.
        refused = client.post("/signin/token", data={"token": tokens["APPROVER"], "csrf": "x"})
        assert refused.status_code == 403
        csrf = client.cookies["signoff_signin"]
        signed = client.post("/signin/token", data={"token": tokens["APPROVER"], "csrf": csrf})
        assert signed.status_code == 303 and signed.headers["location"] == "/"
        cookie = signed.cookies["signoff_session"]
        assert "httponly" in signed.headers["set-cookie"].lower()
        assert "samesite=lax" in signed.headers["set-cookie"].lower()
        client.cookies.set("signoff_session", cookie)
        shell = client.get("/")
        session_csrf = re.search(r'name="signoff-csrf" content="([^"]+)"', shell.text)
        assert session_csrf is not None
        assert "SIGNOFF_" not in shell.text and "<script>" not in shell.text
        # The cookie alone calls nothing: without the CSRF header it is refused ...
        url = "/signoff.v1.ApprovalService/ListPendingApprovals"
        without = client.post(url, json={"tenant_id": TENANT})
        assert without.status_code == 401, without.text
        assert "x-signoff-csrf" in without.json()["message"]
        wrong = client.post(url, json={"tenant_id": TENANT}, headers={"x-signoff-csrf": "nope"})
        assert wrong.status_code == 401
        # ... with it, the call runs as the signed-in principal, by the API's own rules.
        ok = client.post(
            url, json={"tenant_id": TENANT}, headers={"x-signoff-csrf": session_csrf[1]}
        )
        assert ok.status_code == 200, ok.text
        audit = client.post(
            "/signoff.v1.AuditService/VerifyChain",
            json={"instance_id": "ins_x"},
            headers={"x-signoff-csrf": session_csrf[1]},
        )
        assert audit.status_code == 403  # the approver is not an admin: the rules table says so
        # Signing out needs the CSRF token too.
        assert client.post("/signout").status_code == 403
        out = client.post("/signout", data={"csrf": session_csrf[1]})
        assert out.status_code == 303
        client.cookies.set("signoff_session", cookie)
        after = client.post(url, json={}, headers={"x-signoff-csrf": session_csrf[1]})
        assert after.status_code == 401


def test_an_agent_cannot_sign_in(
    console: ServerProcess, context: Any, provider: OpenIdProvider
) -> None:
    page = context().new_page()
    page.goto(console.http_url + "/")
    page.click("#signin-oidc")
    page.fill("#username", "robot")
    page.click("#login")
    page.wait_for_selector("#signin-error")
    assert "not a person" in page.inner_text("#signin-error")


# -- deciding in the browser ------------------------------------------------------------


def test_sign_in_see_it_live_approve_and_the_agent_hears(
    console: ServerProcess, context: Any, tmp_path: Path
) -> None:
    stubs = console.stubs()
    first = oidc_sign_in(context, console, "fin_lead_1")
    second = oidc_sign_in(context, console, "fin_lead_2")
    for page in (first, second):
        page.wait_for_selector("#live.ok")

    instance_id, asked = waiting_refund(stubs)
    action_id = asked.action_id
    agent = AgentWatch(stubs, instance_id, action_id)
    # It appears in both inboxes without a reload.
    for page in (first, second):
        page.wait_for_selector(row(action_id))
    # Others wait beside it: a refund large enough for the directors too, and an email.
    others = []
    for proposed in (refund_action("tc_big", amount=64000), email()):
        other = stubs.execution.InvokeAgent(envelope()).instance
        others.append(
            stubs.execution.RequestDecision(
                execution_pb.RequestDecisionRequest(instance_id=other.instance_id, action=proposed)
            )
        )
    for other in others:
        if other.outcome == pb.OUTCOME_WAITING_FOR_HUMAN:
            first.wait_for_selector(row(other.action_id))
    assert "adp_payments.issue_refund" in first.inner_text(row(action_id))
    screenshot(first, "console-inbox.png", tmp_path)

    first.click(f"{row(action_id)} a.tool")
    first.wait_for_url(re.compile(f"/actions/{action_id}"))
    first.wait_for_selector("#action-sha256")
    assert first.inner_text("#action-sha256") == asked.action_sha256
    assert '"order_id": "ord_881"' in first.inner_text("#action-params")
    first.wait_for_selector("#timeline li[data-type=EVENT_TYPE_ACTION_REQUESTED]")
    first.wait_for_selector("#why .findings")
    first.wait_for_selector("#gates .deadline")
    assert "Refund order ord_881" in first.inner_text("#summary")
    screenshot(first, "console-action.png", tmp_path)

    first.fill("#reason", "order verified")
    first.click("#approve")
    first.wait_for_selector("#decided")
    assert "approved" in first.inner_text("#decided")

    # The other approver's inbox loses it without a reload; the agent's watch hears.
    second.wait_for_selector(row(action_id), state="detached")
    decided = agent.decided()
    assert decided.action_state == pb.ACTION_STATE_APPROVED
    assert decided.actor == "fin_lead_1"
    assert record_of(stubs, decided).approvals[0].reason == "order verified"


def test_edit_params_dry_run_and_approve(
    console: ServerProcess, context: Any, tmp_path: Path
) -> None:
    stubs = console.stubs()
    page = oidc_sign_in(context, console, "fin_lead_1")
    instance_id, asked = waiting_refund(stubs)
    page.wait_for_selector(row(asked.action_id))
    page.goto(f"{console.http_url}/actions/{asked.action_id}?tenant={TENANT}")
    page.wait_for_selector("#action-sha256")
    page.click("#edit summary")
    assert page.is_disabled("#approve-edited")  # not before policy answered for this text
    edited = page.input_value("#params-editor").replace("4200", "3000")
    page.fill("#params-editor", edited)
    page.wait_for_selector("#params-diff .add")
    assert '"amount": 3000' in page.inner_text("#params-diff .add")
    assert '"amount": 4200' in page.inner_text("#params-diff .del")
    page.click("#dry-run")
    page.wait_for_selector("#dry-run-result .findings")
    page.wait_for_selector("#approve-edited:enabled")
    screenshot(page, "console-edit.png", tmp_path)
    page.fill("#reason", "partial refund")
    page.click("#approve-edited")
    page.wait_for_selector("#decided")

    again = stubs.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(instance_id=instance_id, action=refund_action())
    )
    assert again.outcome == pb.OUTCOME_APPROVED
    assert again.action.params["amount"] == 3000


def test_reject_with_a_reason(console: ServerProcess, context: Any) -> None:
    stubs = console.stubs()
    page = oidc_sign_in(context, console, "fin_lead_2")
    instance_id, asked = waiting_refund(stubs)
    agent = AgentWatch(stubs, instance_id, asked.action_id)
    page.wait_for_selector(row(asked.action_id))
    page.click(f"{row(asked.action_id)} a.tool")
    page.wait_for_selector("#reject")
    page.fill("#reason", "customer asked twice")
    page.click("#reject")
    page.wait_for_selector("#decided")
    assert "rejected" in page.inner_text("#decided")
    decided = agent.decided()
    assert decided.action_state == pb.ACTION_STATE_REJECTED
    assert record_of(stubs, decided).approvals[0].reason == "customer asked twice"


def test_separation_of_duties_is_explained(console: ServerProcess, context: Any) -> None:
    stubs = console.stubs()
    instance_id, asked = waiting_refund(stubs)  # its user is usr_771
    page = oidc_sign_in(context, console, "usr_771")
    page.wait_for_selector("#live.ok")
    assert page.query_selector(row(asked.action_id)) is None  # not in their inbox
    page.goto(
        f"{console.http_url}/actions/{asked.action_id}?tenant={TENANT}&instance={instance_id}"
    )
    page.wait_for_selector("#not-in-inbox")
    page.click("#approve")
    page.wait_for_selector("#decision-result.error")
    assert "separation of duties" in page.inner_text("#decision-result")
    assert page.get_attribute("#decision-result", "data-reason") == "SEPARATION_OF_DUTIES"


def test_a_lost_race_shows_who_won(console: ServerProcess, context: Any) -> None:
    stubs = console.stubs()
    page = oidc_sign_in(context, console, "fin_lead_1")
    _, asked = waiting_refund(stubs)
    # This page does not hear the instance live, so it still offers the vote when another
    # approver's decision has already settled the action.
    page.route("**/signoff.v1.ExecutionService/WatchInstance", lambda route: route.abort())
    page.goto(f"{console.http_url}/actions/{asked.action_id}?tenant={TENANT}")
    page.wait_for_selector("#action-sha256")
    stubs.as_("fin_lead_2", "finance_lead", tenant=TENANT).approval.SubmitDecision(
        approval_pb.SubmitDecisionRequest(
            action_id=asked.action_id,
            verdict=pb.VERDICT_REJECT,
            reason="duplicate request",
            request_id=f"dec_{uuid.uuid4().hex}",
        )
    )
    page.click("#approve")
    page.wait_for_selector("#decision-result.error")
    assert page.get_attribute("#decision-result", "data-reason") == "ALREADY_DECIDED"
    assert "reject by fin_lead_2" in page.inner_text("#decision-result")


def test_development_sign_in_and_records_for_admins(
    dev: tuple[ServerProcess, dict[str, str]], context: Any
) -> None:
    server, tokens = dev
    agent = server.stubs(tokens["AGENT"])
    instance = agent.execution.InvokeAgent(envelope()).instance
    asked = agent.execution.RequestDecision(
        execution_pb.RequestDecisionRequest(
            instance_id=instance.instance_id, action=refund_action()
        )
    )
    assert asked.outcome == pb.OUTCOME_WAITING_FOR_HUMAN

    page = context().new_page()
    page.goto(server.http_url + f"/?tenant={TENANT}")
    page.wait_for_url(re.compile(r"/signin\?next="))
    page.fill("#token", tokens["ADMIN"])
    page.click("#signin-token")
    page.wait_for_selector(row(asked.action_id))
    assert "dev-admin" in page.inner_text("#who")
    page.click(f"{row(asked.action_id)} a.tool")
    page.wait_for_selector("#approve")
    page.fill("#reason", "checked in the console")
    page.click("#approve")
    page.wait_for_selector("#decided")
    page.wait_for_selector("#record-id")
    page.wait_for_selector("#chain.ok")
    assert "approved" in page.inner_text("#record-outcome")


# -- the auth config's console section --------------------------------------------------


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ("console: {}\n", "console.oidc: Field required"),
        ("console: {oidc: {issuer: https://i.example, client_id: c}}\n", "redirect_uri"),
        (
            "console: {oidc: {issuer: 'http://login.example.com', client_id: c,"
            " redirect_uri: 'https://s.example/cb'}}\n",
            "must be an https URL",
        ),
        (
            "console: {oidc: {issuer: 'https://i.example', client_id: c,"
            " redirect_uri: 'https://s.example/cb', claims: {team: t}}}\n",
            "console.oidc.claims.team: Extra inputs are not permitted",
        ),
        ("console: {oidc: {}, colour: blue}\n", "console.colour: Extra inputs are not permitted"),
        ("console: {session_seconds: 5, oidc: {}}\n", "session_seconds"),
    ],
)
def test_the_console_section_is_checked_at_start(
    tmp_path: Path, section: str, problem: str
) -> None:
    config = tmp_path / "auth.yaml"
    config.write_text(
        AUTH_CONFIG.read_text().replace("jwks.json", str(AUTH_CONFIG.parent / "jwks.json"))
        + section
    )
    with pytest.raises(ValueError, match=re.escape(problem)):
        load_auth_config(config)


def test_the_console_section_maps_claims_like_jwt(tmp_path: Path) -> None:
    config = tmp_path / "auth.yaml"
    (tmp_path / "secret.txt").write_text("s3cret\n")
    config.write_text(
        "tokens: []\njwt: {issuer: https://i.example, audience: a, jwks_file: "
        f"{AUTH_CONFIG.parent / 'jwks.json'}}}\n"
        "console:\n  oidc:\n    issuer: https://login.example.com/\n    client_id: c\n"
        "    client_secret_file: secret.txt\n    redirect_uri: https://s.example/cb\n"
        "    scopes: [profile]\n    claims: {tenant: org}\n"
    )
    console = load_auth_config(config).console
    assert console is not None and console.oidc is not None
    assert console.oidc.issuer == "https://login.example.com"
    assert console.oidc.client_secret == "s3cret"
    assert console.oidc.scopes == ("openid", "profile")
    assert console.oidc.claims == ClaimNames(tenant="org")
    assert not console.token_sign_in


def test_cookies_are_secure_off_loopback() -> None:
    """A listener off loopback (behind a TLS proxy) sets Secure cookies; the rest is alike."""
    approver = Principal("ops_1", PrincipalKind.HUMAN, TENANT, frozenset({"approver"}))
    authenticator = Authenticator(tokens={token_sha256("t0ken"): approver})
    routes = console_routes(ConsoleSettings(token_sign_in=True), authenticator, True)
    with TestClient(Starlette(routes=routes), base_url="https://signoff.example") as client:
        page = client.get("/signin")
        assert "secure" in page.headers["set-cookie"].lower()
        csrf = client.cookies["signoff_signin"]
        signed = client.post(
            "/signin/token", data={"token": "t0ken", "csrf": csrf}, follow_redirects=False
        )
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"].lower()
        assert "signoff_session=" in cookie
        assert all(flag in cookie for flag in ("secure", "httponly", "samesite=lax"))
