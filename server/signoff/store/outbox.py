"""Queries of the webhook outbox (schema.webhook_outbox), each on an open transaction."""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, select, update

from signoff.store.repository import Tx
from signoff.store.schema import actions, webhook_outbox

PENDING, DELIVERED, FAILED = "PENDING", "DELIVERED", "FAILED"


@dataclass(frozen=True)
class NewDelivery:
    delivery_id: str
    webhook: str
    tenant_id: str
    event: str
    action_id: str
    body: str
    create_time: datetime


@dataclass(frozen=True)
class ClaimedDelivery:
    seq: int
    delivery_id: str
    webhook: str
    event: str
    body: str
    create_time: datetime
    # This attempt's number (1 for the first); it also proves the claim is still ours.
    attempt: int


async def action_gates(tx: Tx, action_id: str) -> list[str]:
    row = (
        await tx.connection.execute(
            select(actions.c.gate_ids).where(actions.c.action_id == action_id)
        )
    ).first()
    return list(row.gate_ids) if row else []


async def enqueue(tx: Tx, deliveries: Sequence[NewDelivery]) -> None:
    if not deliveries:
        return
    await tx.connection.execute(
        insert(webhook_outbox),
        [
            {
                "delivery_id": d.delivery_id,
                "webhook": d.webhook,
                "tenant_id": d.tenant_id,
                "event": d.event,
                "action_id": d.action_id,
                "body": d.body,
                "state": PENDING,
                "attempts": 0,
                "next_attempt": d.create_time,
                "create_time": d.create_time,
                "last_error": "",
            }
            for d in deliveries
        ],
    )


async def claim(
    tx: Tx, webhooks: Collection[str], now: datetime, lease_until: datetime, limit: int
) -> list[ClaimedDelivery]:
    """Due rows of these webhooks, now ours until lease_until: no other deliverer takes
    them before then (PostgreSQL skips rows another replica is claiming right now)."""
    query = (
        select(webhook_outbox)
        .where(
            webhook_outbox.c.state == PENDING,
            webhook_outbox.c.next_attempt <= now,
            webhook_outbox.c.webhook.in_(list(webhooks)),
        )
        .order_by(webhook_outbox.c.next_attempt)
        .limit(limit)
    )
    if tx.dialect == "postgresql":
        query = query.with_for_update(skip_locked=True)
    rows = (await tx.connection.execute(query)).all()
    if not rows:
        return []
    await tx.connection.execute(
        update(webhook_outbox)
        .where(webhook_outbox.c.seq.in_([row.seq for row in rows]))
        .values(attempts=webhook_outbox.c.attempts + 1, next_attempt=lease_until)
    )
    return [
        ClaimedDelivery(
            seq=row.seq,
            delivery_id=row.delivery_id,
            webhook=row.webhook,
            event=row.event,
            body=row.body,
            create_time=row.create_time,
            attempt=row.attempts + 1,
        )
        for row in rows
    ]


async def finish(
    tx: Tx,
    delivery: ClaimedDelivery,
    *,
    state: str,
    next_attempt: datetime,
    last_error: str = "",
    delivered_time: datetime | None = None,
) -> bool:
    """Records an attempt's outcome; False if the claim had lapsed and another deliverer
    took the row since (its outcome is the one that counts)."""
    result = await tx.connection.execute(
        update(webhook_outbox)
        .where(
            webhook_outbox.c.seq == delivery.seq,
            webhook_outbox.c.state == PENDING,
            webhook_outbox.c.attempts == delivery.attempt,
        )
        .values(
            state=state,
            next_attempt=next_attempt,
            last_error=last_error,
            delivered_time=delivered_time,
        )
    )
    return result.rowcount == 1


async def pending_count(tx: Tx) -> int:
    query = select(func.count()).where(webhook_outbox.c.state == PENDING)
    return int((await tx.connection.execute(query)).scalar_one())


async def earliest_attempt(tx: Tx, webhooks: Collection[str]) -> datetime | None:
    """When the next row of these webhooks falls due (a retry, or a claim that lapses)."""
    query = select(func.min(webhook_outbox.c.next_attempt)).where(
        webhook_outbox.c.state == PENDING, webhook_outbox.c.webhook.in_(list(webhooks))
    )
    soonest: datetime | None = (await tx.connection.execute(query)).scalar_one()
    return soonest


async def delete_finished(tx: Tx, created_before: datetime, limit: int) -> int:
    """Deletes up to `limit` of the oldest DELIVERED or FAILED rows created before a time;
    returns how many. PENDING rows are never deleted."""
    oldest = (
        select(webhook_outbox.c.seq)
        .where(webhook_outbox.c.create_time < created_before, webhook_outbox.c.state != PENDING)
        .order_by(webhook_outbox.c.create_time)
        .limit(limit)
    )
    result = await tx.connection.execute(
        delete(webhook_outbox).where(webhook_outbox.c.seq.in_(oldest.scalar_subquery()))
    )
    return result.rowcount
