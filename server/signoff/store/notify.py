"""Wake-ups across replicas: PostgreSQL LISTEN/NOTIFY on a dedicated connection.

Each write transaction that appended events sends one NOTIFY with the ids of the instances
it touched (never the events: the database stays the source of truth). Every replica
listens and tells its hub to re-read those instances. When the listening connection
drops, the replica reconnects and has every watcher re-read, so nothing is missed.
"""

import asyncio
import logging
import uuid

import psycopg
from sqlalchemy.engine import URL

from signoff.store.hub import Hub

log = logging.getLogger("signoff.notify")

CHANNEL = "signoff_events"
# This process's id in payloads, so it skips its own notifications (its hub already has them).
REPLICA = uuid.uuid4().hex[:12]
_MAX_PAYLOAD = 7000  # PostgreSQL allows 8000 bytes


def payload(keys: set[str]) -> str:
    """'replica|key,key,…' (instance ids and tenant feed keys); a transaction touching too
    many says '*' (re-read everything)."""
    joined = ",".join(sorted(keys))
    return f"{REPLICA}|{joined if len(joined) < _MAX_PAYLOAD else '*'}"


class Listener:
    """Runs until stopped; reconnects with backoff and catches watchers up after a gap."""

    def __init__(self, url: URL, hub: Hub) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._hub = hub
        self.connected = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.1
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._dsn, autocommit=True, application_name="signoff-notify"
                ) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    # Anything committed while we were not listening: re-read everything.
                    self._hub.hint_all()
                    self.connected.set()
                    delay = 0.1
                    notifies = connection.notifies()
                    while not stop.is_set():
                        waiting = asyncio.ensure_future(anext(notifies))
                        stopping = asyncio.ensure_future(stop.wait())
                        done, _ = await asyncio.wait(
                            {waiting, stopping}, return_when=asyncio.FIRST_COMPLETED
                        )
                        if waiting not in done:
                            waiting.cancel()
                            break
                        stopping.cancel()
                        self._deliver(waiting.result().payload)
            except (psycopg.Error, OSError, StopAsyncIteration) as error:
                self.connected.clear()
                log.warning("notify connection lost (%s); reconnecting in %.1fs", error, delay)
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
                delay = min(delay * 2, 5.0)

    def _deliver(self, message: str) -> None:
        sender, _, ids = message.partition("|")
        if sender == REPLICA:
            return
        if ids == "*":
            self._hub.hint_all()
        else:
            for key in ids.split(","):
                self._hub.hint(key)
