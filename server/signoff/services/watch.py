"""WatchInstance: replay from the database, then live events; ordered, gapless, unique.

The subscription is taken before the backlog is read, so nothing committed in between is
missed; live events at or below the last sent revision are dropped; any gap or overflow
sends the watcher back to the database, which is the source of truth.
"""

from collections.abc import AsyncIterator

from signoff.domain.errors import OutOfRange, Unavailable
from signoff.domain.models import Bookmark, Event, Principal
from signoff.domain.states import TERMINAL_EVENT_TYPES, TERMINAL_INSTANCE_STATES
from signoff.services.context import Context
from signoff.services.instances import visible

_BATCH = 500


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
        last = after_revision
        from_database = True
        while True:
            if from_database:
                async with ctx.db.read() as tx:
                    events = await tx.list_events(instance_id, last, _BATCH)
                for event in events:
                    yield event
                    last = event.revision
                    if event.type in TERMINAL_EVENT_TYPES:
                        return
                if len(events) == _BATCH:
                    continue  # more backlog
                from_database = False

            if subscription.closed:
                raise Unavailable(
                    "SERVER_SHUTTING_DOWN",
                    "the server is shutting down; reconnect and resume from the last revision",
                    metadata={"revision": str(last)},
                )
            if not await subscription.wait(ctx.bookmark_interval):
                # Idle: make sure nothing was missed, then tell the client it is current.
                async with ctx.db.read() as tx:
                    newer = await tx.list_events(instance_id, last, 1)
                if newer:
                    from_database = True
                else:
                    yield Bookmark(revision=last, time=ctx.clock())
                continue

            live, overflowed = subscription.take()
            for event in live:
                if event.revision <= last:
                    continue  # already sent from the backlog
                if event.revision != last + 1:
                    from_database = True  # a gap: re-read rather than guess
                    break
                yield event
                last = event.revision
                if event.type in TERMINAL_EVENT_TYPES:
                    return
            if overflowed:
                from_database = True
    finally:
        ctx.db.hub.unsubscribe(subscription)
