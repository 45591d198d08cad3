"""What every use case needs: the database, the policy and the clock."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from signoff.policy import DefaultPolicy, Policy
from signoff.store.database import Database


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Context:
    db: Database
    policy: Policy = field(default_factory=DefaultPolicy)
    # Injectable so tests control time instead of sleeping.
    clock: Callable[[], datetime] = system_clock
    # How long an idle watch stream waits before it sends a progress bookmark.
    bookmark_interval: float = 15.0
