"""Wake-ups across replicas: PostgreSQL LISTEN/NOTIFY on a dedicated connection.

Each write transaction that appended events sends one NOTIFY with the ids of the instances
it touched (never the events: the database stays the source of truth). Every replica
listens and tells its hub to re-read those instances. When the listening connection
drops, the replica reconnects and has every watcher re-read, so nothing is missed.

The listener also syncs about once a second: it notifies a channel only it listens on and
waits for that notification to come back. PostgreSQL delivers notifications in commit
order, so by then the notification of every transaction that committed before the sync
was sent has arrived and its hint has been given (Hub.synced). Idle watchers rely on that
instead of reading the database. A sync that does not come back means a dead connection:
the listener replaces it.
"""

import asyncio
import logging
import time
import uuid

import psycopg
from sqlalchemy.engine import URL

from signoff.store.hub import Hub

log = logging.getLogger("signoff.notify")

CHANNEL = "signoff_events"
# This process's id in payloads, so it skips its own notifications (its hub already has them).
REPLICA = uuid.uuid4().hex[:12]
_MAX_PAYLOAD = 7000  # PostgreSQL allows 8000 bytes
SYNC_EVERY = 1.0  # seconds between syncs
SYNC_TIMEOUT = 10.0  # a sync not back by then: the connection is dead


def payload(keys: set[str]) -> str:
    """'replica|key,key,…' (instance ids and tenant feed keys); a transaction touching too
    many says '*' (re-read everything)."""
    joined = ",".join(sorted(keys))
    return f"{REPLICA}|{joined if len(joined) < _MAX_PAYLOAD else '*'}"


class Listener:
    """Runs until stopped; reconnects with backoff and catches watchers up after a gap."""

    def __init__(self, url: URL, hub: Hub, *, sync_every: float = SYNC_EVERY) -> None:
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._hub = hub
        self._sync_every = sync_every
        self._sync_channel = f"{CHANNEL}_sync_{uuid.uuid4().hex[:12]}"  # only this listener's
        self.connected = asyncio.Event()
        self._was_connected = False

    async def run(self, stop: asyncio.Event) -> None:
        delay = 0.1
        stopping = asyncio.ensure_future(stop.wait())
        session: asyncio.Future[None] | None = None
        try:
            while not stop.is_set():
                session = asyncio.ensure_future(self._listen())
                await asyncio.wait({session, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if stopping.done():
                    return
                if self.connected.is_set():  # it had connected: back off from the start
                    self.connected.clear()
                    delay = 0.1
                    # Once per loss, not per attempt: a database outage is not a log flood.
                    log.warning("notify connection lost (%s); reconnecting", session.exception())
                else:
                    log.debug("notify connection: retry in %.1fs (%s)", delay, session.exception())
                await asyncio.wait({stopping}, timeout=delay)
                delay = min(delay * 2, 5.0)
        finally:
            stopping.cancel()
            if session is not None:
                session.cancel()  # closes the connection (nothing if it has already ended)
                await asyncio.gather(session, return_exceptions=True)

    async def _listen(self) -> None:
        """Listens until the connection fails (it raises then)."""
        async with await psycopg.AsyncConnection.connect(
            self._dsn, autocommit=True, application_name="signoff-notify", connect_timeout=10
        ) as connection:
            await connection.execute(f"LISTEN {CHANNEL}")
            await connection.execute(f"LISTEN {self._sync_channel}")
            # Anything committed while we were not listening: re-read everything.
            self._hub.hint_all()
            if self._was_connected:
                log.info("notify connection back")
            self._was_connected = True
            self.connected.set()
            sent: float | None = None  # when the sync on its way was sent
            while True:
                if sent is None:
                    sent = time.monotonic()
                    async with asyncio.timeout(SYNC_TIMEOUT):
                        await connection.execute("SELECT pg_notify(%s, '')", (self._sync_channel,))
                elif time.monotonic() - sent > SYNC_TIMEOUT:
                    raise TimeoutError(f"a sync did not come back in {SYNC_TIMEOUT:.0f}s")
                async for notify in connection.notifies(timeout=self._sync_every):
                    if notify.channel == CHANNEL:
                        self._deliver(notify.payload)
                    elif sent is not None:
                        # Everything committed before `sent` has been delivered by now.
                        self._hub.synced(sent)
                        sent = None

    def _deliver(self, message: str) -> None:
        sender, _, ids = message.partition("|")
        if sender == REPLICA:
            return
        if ids == "*":
            self._hub.hint_all()
        else:
            for key in ids.split(","):
                self._hub.hint(key)
