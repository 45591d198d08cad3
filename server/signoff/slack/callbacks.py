"""`POST /slack/actions`: the clicks on the buttons of signoff's Slack messages.

Slack sends each click as `application/x-www-form-urlencoded` with one field, `payload`,
a JSON `block_actions` object, signed with the app's signing secret:

    X-Slack-Signature: v0=HEX(HMAC-SHA256(signing_secret, f"v0:{timestamp}:{body}"))
    X-Slack-Request-Timestamp: {timestamp}

The route answers before it does the work, as Slack wants an answer within 3 seconds:

- a signature that does not verify, or a timestamp more than 5 minutes off: 401;
- a body that is not a click on one of signoff's buttons: 400;
- else 200 at once, and then, in the background, the vote: the Slack user becomes the
  principal the auth config maps them to (none: an ephemeral "you are not an approver
  here"), and the click is one SubmitDecision (services/decisions.py) bound to the
  action_sha256 the message showed, under a request_id made from the click itself, so a
  retried or replayed callback is the same vote, not a second one. Refusals (separation
  of duties, not eligible, already decided, changed since) go back to the clicker as an
  ephemeral message. The message itself is updated through the outbox, like every change.

Nothing is written before the signature is verified and the payload is understood; an
unexpected error counts as no vote (the transaction rolls back) and is told the clicker.
"""

import asyncio
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from signoff.auth import rules
from signoff.auth.authenticators import SLACK_TEAM, SLACK_USER, SlackDirectory
from signoff.domain.errors import ErrorReason, SignoffError
from signoff.domain.states import Verdict
from signoff.services import decisions
from signoff.services.context import Context
from signoff.slack import messages

log = logging.getLogger("signoff.slack")

PATH = "/slack/actions"
SUBMIT_DECISION = "/signoff.v1.ApprovalService/SubmitDecision"
_ACTION_ID = re.compile(r"^[\x21-\x7e]{1,128}$")
_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,31}$")
_TS = re.compile(r"^[0-9]{1,12}\.[0-9]{1,9}$")


class BadCallback(ValueError):
    """The request is signed, but is not a click signoff understands: 400, nothing done."""


@dataclass(frozen=True)
class Click:
    team_id: str
    user_id: str
    channel_id: str
    message_ts: str
    action_ts: str
    verdict: Verdict
    action_id: str
    action_sha256: str

    def request_id(self) -> str:
        """The same for every delivery of this click (Slack's retries, a replay), and for
        no other click: a second click by the same user is a new request (ALREADY_VOTED)."""
        parts = (self.team_id, self.user_id, self.channel_id, self.message_ts, self.action_ts)
        key = "|".join((*parts, self.verdict.value, self.action_id, self.action_sha256))
        return "slack_" + hashlib.sha256(key.encode()).hexdigest()[:40]

    def reason(self) -> str:
        """What the trail says of the vote: where it was cast, and by which Slack user."""
        verb = "approved" if self.verdict is Verdict.APPROVE else "rejected"
        return f"{verb} in Slack by {self.user_id} (team {self.team_id})"


def _text(value: Any, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise BadCallback(f"{what} is missing or malformed")
    return value


def parse_click(body: bytes, content_type: str) -> Click | None:
    """The click a callback carries; None for a click signoff has nothing to do for (the
    link to the console). Raises BadCallback saying what is wrong."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise BadCallback("the body must be application/x-www-form-urlencoded")
    try:
        form = parse_qs(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=True, max_num_fields=8
        )
    except (UnicodeDecodeError, ValueError) as error:
        raise BadCallback(f"the body is not a form: {error}") from None
    values = form.get("payload", [])
    if len(values) != 1:
        raise BadCallback("the form must hold one payload field")
    try:
        payload = json.loads(values[0])
    except (ValueError, RecursionError):
        raise BadCallback("payload is not JSON") from None
    if not isinstance(payload, dict):
        raise BadCallback("payload must be a JSON object")
    if payload.get("type") != "block_actions":
        raise BadCallback(f"payload type {str(payload.get('type'))[:40]!r} is not block_actions")
    team, user = payload.get("team"), payload.get("user")
    container, channel = payload.get("container"), payload.get("channel")
    actions = payload.get("actions")
    if not (isinstance(team, dict) and isinstance(user, dict) and isinstance(container, dict)):
        raise BadCallback("payload must hold team, user and container objects")
    if not isinstance(actions, list) or len(actions) != 1 or not isinstance(actions[0], dict):
        raise BadCallback("payload must hold one action")
    clicked = actions[0]
    if clicked.get("action_id") == messages.OPEN:
        return None  # a link button: Slack opened the URL; nothing to do here
    verdict = messages.VERDICTS.get(str(clicked.get("action_id")))
    if verdict is None:
        raise BadCallback(f"action {str(clicked.get('action_id'))[:40]!r} is not signoff's")
    try:
        value = json.loads(clicked.get("value") or "")
    except (TypeError, ValueError, RecursionError):
        raise BadCallback("the button's value is not JSON") from None
    if not isinstance(value, dict):
        raise BadCallback("the button's value must be a JSON object")
    channel_id = container.get("channel_id")
    if channel_id is None and isinstance(channel, dict):
        channel_id = channel.get("id")
    return Click(
        team_id=_text(team.get("id"), SLACK_TEAM, "team.id"),
        user_id=_text(user.get("id"), SLACK_USER, "user.id"),
        channel_id=_text(channel_id, _CHANNEL, "container.channel_id"),
        message_ts=_text(container.get("message_ts"), _TS, "container.message_ts"),
        action_ts=_text(clicked.get("action_ts"), _TS, "actions[0].action_ts"),
        verdict=verdict,
        action_id=_text(value.get("action_id"), _ACTION_ID, "the button's action_id"),
        action_sha256=_text(value.get("sha256"), _SHA256, "the button's sha256"),
    )


def refusal(error: SignoffError) -> str:
    """What the clicker reads when signoff refuses their vote."""
    reason = error.reason
    if reason == ErrorReason.ALREADY_DECIDED:
        verdict = error.metadata.get("winning_verdict", "").lower()
        winner = messages.escape(error.metadata.get("winning_approver", "someone"))
        return (
            f"This action was already decided ({verdict}d by {winner}). Your vote was not counted."
        )
    if reason == ErrorReason.SEPARATION_OF_DUTIES:
        return (
            "You cannot decide this action: you are its instance's user or agent "
            "(separation of duties). Your vote was not counted."
        )
    if reason == ErrorReason.EVIDENCE_CHANGED:
        return (
            "This action changed since the message you clicked was shown; review it again. "
            "Your vote was not counted."
        )
    return f"Your vote was not counted: {messages.escape(error.message)} ({reason})."


class SlackActions:
    """The route, and the votes it started (finished before the server stops)."""

    def __init__(
        self,
        ctx: Context,
        signing_secret: str,
        directory: SlackDirectory | None,
        client: AsyncWebClient,
    ) -> None:
        self.ctx = ctx
        self.verifier = SignatureVerifier(signing_secret)
        self.directory = directory
        self.client = client
        self._running: set[asyncio.Task[None]] = set()

    def routes(self) -> list[Route]:
        return [Route(PATH, self.handle, methods=["POST"])]

    def _verified(self, body: bytes, request: Request) -> bool:
        try:
            return self.verifier.is_valid(
                body,
                request.headers.get("x-slack-request-timestamp"),
                request.headers.get("x-slack-signature"),
            )
        except (ValueError, TypeError, OverflowError):  # a timestamp that is not a number
            return False

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        try:
            body.decode("utf-8")  # Slack's are; the signature is checked over the text
        except UnicodeDecodeError:
            return JSONResponse(
                {"error": "bad_request", "message": "the body is not UTF-8"}, status_code=400
            )
        if not self._verified(body, request):
            log.warning("slack: refused a callback whose signature does not verify")
            return JSONResponse(
                {
                    "error": "invalid_signature",
                    "message": "X-Slack-Signature does not verify with the signing secret, "
                    "or X-Slack-Request-Timestamp is more than 5 minutes off",
                },
                status_code=401,
            )
        try:
            click = parse_click(body, request.headers.get("content-type", ""))
        except BadCallback as error:
            log.warning("slack: refused a callback: %s", error)
            return JSONResponse({"error": "bad_request", "message": str(error)}, status_code=400)
        except Exception:  # parsing reads nothing but the body: whatever broke, the body did
            log.exception("slack: refused a callback that could not be read")
            return JSONResponse(
                {"error": "bad_request", "message": "the payload could not be read"},
                status_code=400,
            )
        if click is not None:
            task = asyncio.create_task(self._decide(click))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        return Response(status_code=200)  # Slack wants an empty 200 within 3 seconds

    async def _decide(self, click: Click) -> None:
        who = self.directory.principal(click.team_id, click.user_id) if self.directory else None
        if who is None:
            log.info(
                "slack: %s of team %s is not mapped to an approver", click.user_id, click.team_id
            )
            await self._tell(
                click,
                "You are not an approver here: your Slack account is not mapped to a signoff "
                "approver. Nothing was recorded.",
            )
            return
        if not rules.allowed(SUBMIT_DECISION, who):
            await self._tell(click, f"{who.id} may not decide actions. Nothing was recorded.")
            return
        try:
            action, _ = await decisions.submit_decision(
                self.ctx,
                who,
                click.action_id,
                click.verdict,
                click.reason(),
                click.request_id(),
                None,
                click.action_sha256,
            )
        except SignoffError as error:
            log.info("slack: %s's vote on %s refused: %s", who.id, click.action_id, error.reason)
            await self._tell(click, refusal(error))
            return
        except Exception:  # fail closed: the transaction rolled back, no vote counts
            log.exception("slack: %s's vote on %s failed", who.id, click.action_id)
            await self._tell(
                click,
                "signoff could not record your vote (an internal error); it was not counted. "
                "Try again, or decide in the console.",
            )
            return
        log.info(
            "slack: %s (%s) voted %s on %s; it is now %s",
            who.id,
            click.user_id,
            click.verdict.value,
            click.action_id,
            action.state.value,
        )
        verb = "approval" if click.verdict is Verdict.APPROVE else "rejection"
        await self._tell(
            click,
            f"Your {verb} of `{messages.escape(action.proposal.tool)}` is recorded "
            f"(the action is now {action.state.value}).",
        )

    async def _tell(self, click: Click, text: str) -> None:
        """An ephemeral message: only the clicker sees it, in the message's channel."""
        try:
            await self.client.chat_postEphemeral(
                channel=click.channel_id, user=click.user_id, text=text
            )
        except (SlackApiError, OSError, TimeoutError) as error:
            log.warning("slack: could not tell %s: %s", click.user_id, type(error).__name__)
        except Exception:
            log.exception("slack: could not tell %s", click.user_id)

    async def close(self, timeout: float) -> None:
        """Waits (up to `timeout` seconds) for the votes under way."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout)
