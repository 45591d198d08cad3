"""The outbox sender of slack_interactive webhooks: each notification of an action posts its
message (the first time) or updates it (every time after), always showing the action as it
is now, read from the database. So deliveries can come in any order, be retried, or be
retried after a later one, and the message still ends on the last state.

Deliveries of one action are sent one at a time in this process (a lock per action), so
two of them never race between reading the action and writing to Slack. Replicas do not
share that lock, so after each write the action is read again, and shown again if it
changed meanwhile: whichever write lands last, a later one shows the last state. The
message's channel and ts are recorded when it is posted; an update needs them. Two
replicas that post the same action's message at once keep the first recorded, and the
other deletes its copy.
"""

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from signoff.domain.models import Action, Vote
from signoff.services.webhooks import Webhook
from signoff.slack import messages, store
from signoff.store.database import Database
from signoff.store.outbox import ClaimedDelivery

log = logging.getLogger("signoff.slack")

# Slack answers these when retrying cannot help (someone deleted the message, or archived
# its channel): the notification is given up at once (logged), not retried for a day.
_FINAL_ERRORS = {"message_not_found", "cant_update_message", "is_archived"}


class SlackSender:
    def __init__(
        self,
        db: Database,
        client: AsyncWebClient,
        channels: Mapping[str, str],
        mention: messages.Mention,
        console_url: str | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.client = client
        self.channels = dict(channels)  # webhook name -> channel id
        self.mention = mention
        self.console_url = console_url
        self.clock = clock
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._users: defaultdict[str, int] = defaultdict(int)  # deliveries holding a lock

    async def send(self, hook: Webhook, delivery: ClaimedDelivery) -> str:
        """'' once the message shows the action as it is, else what went wrong."""
        try:
            action_id = str(json.loads(delivery.body)["action_id"])
        except (ValueError, KeyError, TypeError):
            return "the notification names no action"
        self._users[action_id] += 1
        try:
            async with self._locks[action_id]:
                return await self._show(hook, action_id)
        finally:
            self._users[action_id] -= 1
            if not self._users[action_id]:  # the last one: keep no lock per action ever seen
                del self._users[action_id], self._locks[action_id]

    async def _show(self, hook: Webhook, action_id: str) -> str:
        """Shows the action as it is; and again if it changed meanwhile, so that a delivery
        of another replica that read an older state and wrote last is corrected."""
        for _ in range(3):
            async with self.db.read() as tx:
                action = await tx.get_action(action_id)
                if action is None:
                    return f"no action {action_id}"
                votes = await tx.votes_for(action_id)
                posted = await store.find(tx, hook.name, action_id)
            error = await self._write(hook, action, votes, posted)
            if error:
                return error
            async with self.db.read() as tx:
                now = await tx.get_action(action_id)
            if now is None or now.event_revision == action.event_revision:
                break
        return ""

    async def _write(
        self, hook: Webhook, action: Action, votes: list[Vote], posted: store.Posted | None
    ) -> str:
        text, blocks = messages.render(
            action, votes, mention=self.mention, console_url=self.console_url
        )
        method = "chat.postMessage" if posted is None else "chat.update"
        try:
            if posted is None:
                await self._post(hook, action, text, blocks)
            else:
                await self.client.chat_update(
                    channel=posted.channel, ts=posted.ts, text=text, blocks=blocks
                )
                log.info(
                    "slack %s: updated %s (%s)", hook.name, action.action_id, action.state.value
                )
        except SlackApiError as error:
            code = _error_code(error)
            if code in _FINAL_ERRORS:
                log.error(
                    "slack %s: %s of %s refused (%s); not retried",
                    hook.name,
                    method,
                    action.action_id,
                    code,
                )
                return ""
            return f"Slack {method}: {code}"
        return ""

    async def _post(self, hook: Webhook, action: Action, text: str, blocks: list[Any]) -> None:
        answer = await self.client.chat_postMessage(
            channel=self.channels[hook.name],
            text=text,
            blocks=blocks,
            unfurl_links=False,
            unfurl_media=False,
        )
        ours = store.Posted(str(answer["channel"]), str(answer["ts"]))
        async with self.db.write() as tx:
            await store.record(tx, hook.name, action.action_id, ours, self.clock())
            kept = await store.find(tx, hook.name, action.action_id)
        if kept == ours:
            log.info("slack %s: posted %s (ts %s)", hook.name, action.action_id, ours.ts)
            return
        # Another replica posted the action's message at the same moment, and its record
        # came first: that one is updated from now on, so this copy goes.
        log.info(
            "slack %s: %s was posted twice; deleting ts %s", hook.name, action.action_id, ours.ts
        )
        await self.client.chat_delete(channel=ours.channel, ts=ours.ts)


def _error_code(error: SlackApiError) -> str:
    """Slack's error code (`ratelimited`, `channel_not_found`, …), never the request."""
    response = getattr(error, "response", None)
    try:
        return str(response["error"]) if response is not None else "no answer"
    except (KeyError, TypeError):
        status = getattr(response, "status_code", "?")
        return f"HTTP {status}"
