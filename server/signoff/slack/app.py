"""The Slack integration as the server uses it: one Web API client (the bot token), the
outbox sender of slack_interactive webhooks, and the callback route."""

import logging
from collections.abc import Mapping

from slack_sdk.web.async_client import AsyncWebClient

from signoff.auth.authenticators import SlackDirectory
from signoff.config import SlackOptions
from signoff.services.context import Context
from signoff.slack.callbacks import SlackActions
from signoff.slack.delivery import SlackSender

log = logging.getLogger("signoff.slack")


class Slack:
    def __init__(
        self,
        ctx: Context,
        options: SlackOptions,
        directory: SlackDirectory | None,
        channels: Mapping[str, str],
    ) -> None:
        # The token lives in the client only; slack_sdk never logs it (nor does signoff).
        self.client = AsyncWebClient(
            token=options.token(),
            base_url=options.api_url,
            timeout=int(max(1, options.timeout)),
            logger=logging.getLogger("signoff.slack.web"),
        )
        self.directory = directory
        self.sender = SlackSender(
            ctx.db,
            self.client,
            channels,
            mention=self.mention,
            console_url=options.console_url,
            clock=ctx.clock,
        )
        self.actions = SlackActions(ctx, options.secret(), directory, self.client)
        if directory is None:
            log.warning(
                "slack: the auth config maps no Slack users: every click is refused "
                "(add a slack section, docs/slack.md)"
            )

    def mention(self, principal_id: str) -> str:
        return self.directory.slack_user(principal_id) if self.directory else ""

    async def close(self, timeout: float) -> None:
        await self.actions.close(timeout)
