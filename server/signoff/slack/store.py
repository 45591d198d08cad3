"""Where the Slack message of an action is (schema.slack_messages), on an open transaction."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from signoff.store.repository import Tx
from signoff.store.schema import slack_messages


@dataclass(frozen=True)
class Posted:
    channel: str
    ts: str


async def find(tx: Tx, webhook: str, action_id: str) -> Posted | None:
    row = (
        await tx.connection.execute(
            select(slack_messages.c.channel, slack_messages.c.ts).where(
                slack_messages.c.webhook == webhook, slack_messages.c.action_id == action_id
            )
        )
    ).first()
    return Posted(row.channel, row.ts) if row else None


async def record(tx: Tx, webhook: str, action_id: str, posted: Posted, now: datetime) -> None:
    """Keeps the first message of an action: a second one (posted by another replica at the
    same moment) is left as it is, and only the first is updated from then on."""
    dialect = postgresql if tx.dialect == "postgresql" else sqlite
    await tx.connection.execute(
        dialect.insert(slack_messages)
        .values(
            webhook=webhook,
            action_id=action_id,
            channel=posted.channel,
            ts=posted.ts,
            create_time=now,
        )
        .on_conflict_do_nothing()
    )
