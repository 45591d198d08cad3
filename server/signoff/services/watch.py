"""Streams that replay from the database, then go live: WatchInstance (per instance, by
revision) and WatchApprovals (per tenant, by cursor). Ordered, gapless, unique.

The subscription is taken before the backlog is read, so nothing committed in between is
missed; live items at or below the last sent position are dropped; any gap, overflow or
hint from another replica sends the stream back to the database, the source of truth.
An idle stream bookmarks from what the hub has heard (Hub.seen_through) and reads the
database only when the hub cannot vouch that nothing was missed.

Thousands of streams stay open at once, so an idle one holds little: one generator, one
small feed object, its subscription; no events, rows or closures.
"""

import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from signoff.domain.errors import (
    ErrorReason,
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
from signoff.store.hub import tenant_key
from signoff.telemetry.metrics import WATCH_PUSH_LAG, WATCH_STREAMS

_BATCH = 500
Item = TypeVar("Item", Event, ApprovalChange)
_OPEN = {kind: WATCH_STREAMS.labels(kind) for kind in ("instance", "approvals")}


class _Feed(Generic[Item]):
    """What differs between the two streams: the hub key, how to check the request and read
    the database, where an item stands, and whether it ends the stream."""

    __slots__ = ("ctx", "key")
    kind = ""  # the `stream` label of the metrics
    position_name = ""  # what a position is called in error metadata

    def __init__(self, ctx: Context, key: str) -> None:
        self.ctx = ctx
        self.key = key

    async def open(self, after: int) -> bool:
        """Checks the request (once subscribed); False when there is nothing to stream."""
        return True

    async def fetch(self, after: int, limit: int) -> list[Item]:
        raise NotImplementedError

    def position(self, item: Item) -> int:
        raise NotImplementedError

    def ends(self, item: Item) -> bool:
        return False


class _InstanceEvents(_Feed[Event]):
    __slots__ = ("who",)
    kind = "instance"
    position_name = "revision"

    def __init__(self, ctx: Context, who: Principal, instance_id: str) -> None:
        super().__init__(ctx, instance_id)
        self.who = who

    async def open(self, after: int) -> bool:
        async with self.ctx.db.read() as tx:
            instance = visible(await tx.get_instance(self.key), self.who, self.key)
        if after > instance.revision:
            raise OutOfRange(
                ErrorReason.REVISION_OUT_OF_RANGE,
                f"after_revision {after} is beyond the instance's newest revision "
                f"{instance.revision}",
                metadata={"revision": str(instance.revision)},
            )
        # The client may already have the terminal event.
        return not (instance.state in TERMINAL_INSTANCE_STATES and after == instance.revision)

    async def fetch(self, after: int, limit: int) -> list[Event]:
        async with self.ctx.db.read() as tx:
            return await tx.list_events(self.key, after, limit)

    def position(self, item: Event) -> int:
        return item.revision

    def ends(self, item: Event) -> bool:
        return item.type in TERMINAL_EVENT_TYPES


class _ApprovalChanges(_Feed[ApprovalChange]):
    __slots__ = ("tenant_id",)
    kind = "approvals"
    position_name = "cursor"

    def __init__(self, ctx: Context, tenant_id: str) -> None:
        super().__init__(ctx, tenant_key(tenant_id))
        self.tenant_id = tenant_id

    async def open(self, after: int) -> bool:
        if after > 0 and not await self.fetch(after - 1, 1):
            raise OutOfRange(
                ErrorReason.CURSOR_OUT_OF_RANGE,
                f"after_cursor {after} is beyond the tenant's newest change",
                metadata={"tenant_id": self.tenant_id},
            )
        return True

    async def fetch(self, after: int, limit: int) -> list[ApprovalChange]:
        async with self.ctx.db.read() as tx:
            return await tx.list_approval_changes(self.tenant_id, after, limit)

    def position(self, item: ApprovalChange) -> int:
        return item.cursor


def watch_instance(
    ctx: Context, who: Principal, instance_id: str, after_revision: int
) -> AsyncIterator[Event | Bookmark]:
    return _follow(_InstanceEvents(ctx, who, instance_id), after_revision)


def watch_approvals(
    ctx: Context, who: Principal, tenant_id: str, after_cursor: int
) -> AsyncIterator[ApprovalChange | Bookmark]:
    scope = scoped_tenant(who, tenant_id)
    if scope == "":
        raise InvalidArgument([FieldViolation("tenant_id", "is required for a platform caller")])
    if scope is None:
        raise PermissionDenied(
            ErrorReason.TENANT_NOT_ALLOWED,
            f"{who.id} acts in tenant {who.tenant}, not {tenant_id}",
            metadata={"tenant_id": tenant_id},
        )
    return _follow(_ApprovalChanges(ctx, scope), after_cursor)


async def _follow(feed: _Feed[Item], start: int) -> AsyncIterator[Item | Bookmark]:
    ctx, hub = feed.ctx, feed.ctx.db.hub
    subscription = hub.subscribe(feed.key)  # before any read: what commits meanwhile queues
    streams = _OPEN[feed.kind]
    streams.inc()
    try:
        if not await feed.open(start):
            return
        last, caught_up, from_database = start, False, True
        # Cleared after each batch: an idle stream keeps no events alive.
        batch: list[Item] = []
        item: Item | None = None
        while True:
            if from_database:
                batch = await feed.fetch(last, _BATCH)
                for item in batch:
                    if caught_up:
                        _record_lag(ctx, item.time)
                    yield item
                    last = feed.position(item)
                    if feed.ends(item):
                        return
                if len(batch) == _BATCH:
                    continue  # more backlog
                batch, item = [], None
                from_database, caught_up = False, True

            if subscription.closed:
                raise Unavailable(
                    ErrorReason.SERVER_SHUTTING_DOWN,
                    "the server is shutting down; reconnect and resume from the last position",
                    metadata={feed.position_name: str(last)},
                )
            waited_since = time.monotonic()
            if not await subscription.wait(ctx.bookmark_interval):
                # Idle. If the hub has heard of every commit up to a moment after this wait
                # began (and passed none on), the stream was current then: no read needed.
                through = hub.seen_through(feed.key)
                if through is not None and through >= waited_since:
                    yield Bookmark(revision=last, time=_wall_time(ctx, through))
                    continue
                as_of = ctx.clock()  # the read below sees at least what committed before
                if await feed.fetch(last, 1):
                    from_database = True
                else:
                    yield Bookmark(revision=last, time=as_of)
                continue

            batch, stale = subscription.take()
            for item in batch:
                position = feed.position(item)
                if position <= last:
                    continue  # already sent from the backlog
                if position != last + 1:
                    stale = True  # a gap: re-read rather than guess
                    break
                _record_lag(ctx, item.time)
                yield item
                last = position
                if feed.ends(item):
                    return
            batch, item = [], None
            from_database = stale
    finally:
        hub.unsubscribe(subscription)
        streams.dec()


def _record_lag(ctx: Context, committed: datetime) -> None:
    """Commit (the item's time, set in its transaction) to send, for a live item."""
    WATCH_PUSH_LAG.observe(max(0.0, (ctx.clock() - committed).total_seconds()))


def _wall_time(ctx: Context, moment: float) -> datetime:
    """The clock's time at an earlier time.monotonic() moment."""
    return ctx.clock() - timedelta(seconds=time.monotonic() - moment)
