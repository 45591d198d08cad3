"""What every use case needs: the database, the policy and the clock."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from signoff.policy import Policy
from signoff.store.database import Database, KeyConflict


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    db: Database
    policy: Policy
    # Injectable so tests control time instead of sleeping.
    clock: Callable[[], datetime] = system_clock
    # How long an idle watch stream waits before it sends a progress bookmark.
    bookmark_interval: float = 15.0
    # How long an approval may be acted on (its grant's life, from the decision).
    grant_ttl: timedelta = timedelta(minutes=15)


T = TypeVar("T")


async def once_more_on_key_conflict(work: Callable[[], Awaitable[T]]) -> T:
    """Runs a transaction; if a concurrent one committed the same unique key first, runs it
    again, and then it finds that key and answers from it (idempotency under races)."""
    try:
        return await work()
    except KeyConflict:
        return await work()
