"""In-process fan-out of committed events to watchers.

Notifications are wake-up hints only: the database stays the source of truth, and a
subscriber that falls behind is told to re-read it instead of buffering without bound.
"""

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from signoff.domain.models import ApprovalChange, Event


def tenant_key(tenant_id: str) -> str:
    """The hub key of a tenant's approval feed (instance ids never contain ':')."""
    return f"tenant:{tenant_id}"


class Subscription:
    """Live items for one key: an instance id (events) or a tenant key (approval changes)."""

    def __init__(self, key: str, max_queued: int) -> None:
        self.key = key
        self._max_queued = max_queued
        self._queue: list[Any] = []
        self._overflowed = False
        self._wakeup = asyncio.Event()
        # Set when the server shuts down: the watcher should end so its client resumes elsewhere.
        self.closed = False

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()

    def push(self, item: Any) -> None:
        if len(self._queue) >= self._max_queued:
            # Keep memory bounded: drop the live copies; the watcher re-reads the database.
            self.stale()
        else:
            self._queue.append(item)
            self._wakeup.set()

    async def wait(self, timeout: float) -> bool:
        """Waits for a push; False if the timeout passed first."""
        if self._wakeup.is_set():
            return True
        try:
            await asyncio.wait_for(self._wakeup.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def stale(self) -> None:
        """Something changed that this process did not see: re-read the database."""
        self._queue.clear()
        self._overflowed = True
        self._wakeup.set()

    def take(self) -> tuple[list[Any], bool]:
        """The queued items and whether the database must be re-read (some were dropped,
        or another replica hinted)."""
        events, overflowed = self._queue, self._overflowed
        self._queue, self._overflowed = [], False
        self._wakeup.clear()
        return events, overflowed


class Hub:
    def __init__(self, max_queued: int = 256) -> None:
        self._max_queued = max_queued
        self._subscriptions: dict[str, set[Subscription]] = defaultdict(set)
        self._closed = False

    def subscribe(self, key: str) -> Subscription:
        subscription = Subscription(key, self._max_queued)
        if self._closed:
            subscription.close()
        self._subscriptions[key].add(subscription)
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
        """Another replica committed events of this instance (or changes of this feed)."""
        for subscription in self._subscriptions.get(key, ()):
            subscription.stale()

    def hint_all(self) -> None:
        for subscriptions in self._subscriptions.values():
            for subscription in subscriptions:
                subscription.stale()

    def publish(self, events: Iterable[Event], changes: Iterable[ApprovalChange] = ()) -> None:
        for event in events:
            for subscription in self._subscriptions.get(event.instance_id, ()):
                subscription.push(event)
        for change in changes:
            for subscription in self._subscriptions.get(tenant_key(change.tenant_id), ()):
                subscription.push(change)

    @property
    def watcher_count(self) -> int:
        return sum(len(s) for s in self._subscriptions.values())
