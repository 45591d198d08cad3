"""In-process fan-out of committed events to watchers.

Notifications are wake-up hints only: the database stays the source of truth, and a
subscriber that falls behind is told to re-read it instead of buffering without bound.

The hub also says how far it has heard (`seen_through`): every commit before that moment
has reached it, published by this process or hinted by another replica's NOTIFY. An idle
watcher that was told nothing can then vouch for its position without reading the database.
"""

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from signoff.domain.models import ApprovalChange, Event


def tenant_key(tenant_id: str) -> str:
    """The hub key of a tenant's approval feed (instance ids never contain ':')."""
    return f"tenant:{tenant_id}"


def _expire(waiter: "asyncio.Future[None]") -> None:
    if not waiter.done():
        waiter.set_result(None)


class Subscription:
    """Live items for one key: an instance id (events) or a tenant key (approval changes)."""

    # Tens of thousands may be open at once: no per-object dict, no asyncio.Event (its
    # deque) and no task per wait; a future and a timer exist only while one waits.
    __slots__ = ("_max_queued", "_queue", "_stale", "_waiter", "closed", "key")

    def __init__(self, key: str, max_queued: int) -> None:
        self.key = key
        # Set when the server shuts down: the watcher should end so its client resumes elsewhere.
        self.closed = False
        self._max_queued = max_queued
        self._queue: list[Any] = []
        self._stale = False
        self._waiter: asyncio.Future[None] | None = None

    @property
    def ready(self) -> bool:
        """Something to take: live items, a reason to re-read, or the end."""
        return bool(self._queue) or self._stale or self.closed

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def close(self) -> None:
        self.closed = True
        self._wake()

    def push(self, item: Any) -> None:
        if len(self._queue) >= self._max_queued:
            # Keep memory bounded: drop the live copies; the watcher re-reads the database.
            self.stale()
        else:
            self._queue.append(item)
            self._wake()

    def stale(self) -> None:
        """Something changed that this process did not see: re-read the database."""
        self._queue.clear()
        self._stale = True
        self._wake()

    async def wait(self, timeout: float) -> bool:
        """Waits until something is ready or the timeout passes; whether something is ready
        (checked when the waiter resumes, so a push racing the timeout is not lost)."""
        if not self.ready:
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            timer = loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        return self.ready

    def take(self) -> tuple[list[Any], bool]:
        """The queued items and whether the database must be re-read (some were dropped,
        or another replica hinted)."""
        items, stale = self._queue, self._stale
        if items:
            self._queue = []
        self._stale = False
        return items, stale


class Hub:
    def __init__(self, max_queued: int = 256, *, sole_writer: bool = False) -> None:
        self._max_queued = max_queued
        self._subscriptions: dict[str, set[Subscription]] = {}
        self._closed = False
        # True when every commit to the database goes through this process (SQLite, one
        # server): the hub hears of each one as it is published.
        self._sole_writer = sole_writer
        # Otherwise (PostgreSQL replicas), how far the LISTEN connection has caught up.
        self._synced_through: float | None = None
        # Keys of this process's transactions between commit and publish (a count each).
        self._committing: dict[str, int] = {}

    def subscribe(self, key: str) -> Subscription:
        subscription = Subscription(key, self._max_queued)
        if self._closed:
            subscription.close()
        self._subscriptions.setdefault(key, set()).add(subscription)
        return subscription

    def close(self) -> None:
        """Ends every watch: for shutdown, so clients reconnect to a server that stays."""
        self._closed = True
        for subscriptions in self._subscriptions.values():
            for subscription in subscriptions:
                subscription.close()

    def unsubscribe(self, subscription: Subscription) -> None:
        watchers = self._subscriptions.get(subscription.key)
        if watchers is not None:
            watchers.discard(subscription)
            if not watchers:
                del self._subscriptions[subscription.key]

    def hint(self, key: str) -> None:
        """Another replica committed events of this instance (or changes of this feed), or
        this process may have committed some without publishing them."""
        for subscription in self._subscriptions.get(key, ()):
            subscription.stale()

    def hint_all(self) -> None:
        for subscriptions in self._subscriptions.values():
            for subscription in subscriptions:
                subscription.stale()

    def committing(self, events: Iterable[Event], changes: Iterable[ApprovalChange]) -> set[str]:
        """A transaction with these is about to commit: until publish() hands them over, the
        hub does not vouch for their keys (seen_through). Returns the keys, for unsure()."""
        keys = _keys(events, changes)
        for key in keys:
            self._committing[key] = self._committing.get(key, 0) + 1
        return keys

    def unsure(self, keys: set[str]) -> None:
        """The commit of a transaction marked committing() failed or was interrupted, so it
        may have committed all the same: the watchers of its keys re-read the database."""
        self._settle(keys)
        for key in keys:
            self.hint(key)

    def publish(self, events: Iterable[Event], changes: Iterable[ApprovalChange] = ()) -> None:
        keys = set()
        for event in events:
            keys.add(event.instance_id)
            for subscription in self._subscriptions.get(event.instance_id, ()):
                subscription.push(event)
        for change in changes:
            key = tenant_key(change.tenant_id)
            keys.add(key)
            for subscription in self._subscriptions.get(key, ()):
                subscription.push(change)
        self._settle(keys)

    def _settle(self, keys: set[str]) -> None:
        for key in keys & self._committing.keys():
            if self._committing[key] > 1:
                self._committing[key] -= 1
            else:
                del self._committing[key]

    def synced(self, through: float) -> None:
        """The LISTEN connection delivered every notification of the transactions that
        committed before `through` (time.monotonic()): their hints have been given."""
        self._synced_through = through

    def seen_through(self, key: str) -> float | None:
        """A time.monotonic() moment before which every commit for `key` has reached this
        hub (published or hinted), or None when the hub cannot say."""
        if key in self._committing:
            return None
        return time.monotonic() if self._sole_writer else self._synced_through

    @property
    def watcher_count(self) -> int:
        return sum(len(s) for s in self._subscriptions.values())


def _keys(events: Iterable[Event], changes: Iterable[ApprovalChange]) -> set[str]:
    return {e.instance_id for e in events} | {tenant_key(c.tenant_id) for c in changes}
