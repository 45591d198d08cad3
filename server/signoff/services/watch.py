"""Streams that replay from the database, then go live: WatchInstance (per instance, by
revision) and WatchApprovals (per tenant, by cursor). Ordered, gapless, unique.

The subscription is taken before the backlog is read, so nothing committed in between is
missed; live items at or below the last sent position are dropped; any gap, overflow or
hint from another replica sends the stream back to the database, the source of truth.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from signoff.domain.errors import (
    FieldViolation,
    InvalidArgument,
    OutOfRange,
    PermissionDenied,
    Unavailable,
)
from signoff.domain.models import ApprovalChange, Bookmark, Event, Principal
from signoff.domain.states import TERMINAL_EVENT_TYPES, TERMINAL_INSTANCE_STATES
from signoff.services.context import Context
from signoff.services.instances import scoped_tenant, visible
from signoff.store.hub import Subscription, tenant_key

_BATCH = 500
Item = TypeVar("Item")


async def _tail(
    ctx: Context,
    subscription: Subscription,
    fetch: Callable[[int, int], Awaitable[list[Item]]],
    position: Callable[[Item], int],
    start: int,
    ends: Callable[[Item], bool] = lambda item: False,
) -> AsyncIterator[Item | Bookmark]:
    last, from_database = start, True
    while True:
        if from_database:
            items = await fetch(last, _BATCH)
            for item in items:
                yield item
                last = position(item)
                if ends(item):
                    return
            if len(items) == _BATCH:
                continue  # more backlog
            from_database = False

        if subscription.closed:
            raise Unavailable(
                "SERVER_SHUTTING_DOWN",
                "the server is shutting down; reconnect and resume from the last position",
                metadata={"position": str(last)},
            )
        if not await subscription.wait(ctx.bookmark_interval):
            # Idle: make sure nothing was missed, then tell the client it is current.
            if await fetch(last, 1):
                from_database = True
            else:
                yield Bookmark(revision=last, time=ctx.clock())
            continue

        live, stale = subscription.take()
        for item in live:
            if position(item) <= last:
                continue  # already sent from the backlog
            if position(item) != last + 1:
                stale = True  # a gap: re-read rather than guess
                break
            yield item
            last = position(item)
            if ends(item):
                return
        from_database = stale


async def watch_instance(
    ctx: Context, who: Principal, instance_id: str, after_revision: int
) -> AsyncIterator[Event | Bookmark]:
    subscription = ctx.db.hub.subscribe(instance_id)
    try:
        async with ctx.db.read() as tx:
            instance = visible(await tx.get_instance(instance_id), who, instance_id)
        if after_revision > instance.revision:
            raise OutOfRange(
                "REVISION_OUT_OF_RANGE",
                f"after_revision {after_revision} is beyond the instance's newest revision "
                f"{instance.revision}",
                metadata={"revision": str(instance.revision)},
            )
        if instance.state in TERMINAL_INSTANCE_STATES and after_revision == instance.revision:
            return  # the client already has the terminal event

        async def fetch(after: int, limit: int) -> list[Event]:
            async with ctx.db.read() as tx:
                return await tx.list_events(instance_id, after, limit)

        async for item in _tail(
            ctx,
            subscription,
            fetch,
            lambda event: event.revision,
            after_revision,
            lambda event: event.type in TERMINAL_EVENT_TYPES,
        ):
            yield item
    finally:
        ctx.db.hub.unsubscribe(subscription)


async def watch_approvals(
    ctx: Context, who: Principal, tenant_id: str, after_cursor: int
) -> AsyncIterator[ApprovalChange | Bookmark]:
    scope = scoped_tenant(who, tenant_id)
    if scope == "":
        raise InvalidArgument([FieldViolation("tenant_id", "is required for a platform caller")])
    if scope is None:
        raise PermissionDenied(
            "TENANT_NOT_ALLOWED",
            f"{who.id} acts in tenant {who.tenant}, not {tenant_id}",
            metadata={"tenant_id": tenant_id},
        )
    subscription = ctx.db.hub.subscribe(tenant_key(scope))
    try:

        async def fetch(after: int, limit: int) -> list[ApprovalChange]:
            async with ctx.db.read() as tx:
                return await tx.list_approval_changes(scope, after, limit)

        newest = await fetch(after_cursor - 1, 1) if after_cursor > 0 else [None]
        if not newest:
            raise OutOfRange(
                "CURSOR_OUT_OF_RANGE",
                f"after_cursor {after_cursor} is beyond the tenant's newest change",
                metadata={"tenant_id": scope},
            )
        position: Callable[[Any], int] = lambda change: change.cursor  # noqa: E731
        async for item in _tail(ctx, subscription, fetch, position, after_cursor):
            yield item
    finally:
        ctx.db.hub.unsubscribe(subscription)
