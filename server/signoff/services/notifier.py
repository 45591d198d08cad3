"""Webhook notifications through a transactional outbox.

Writing: the server installs Notifier.before_commit on the Database. Just before a write
transaction commits, it adds one outbox row per (approval change, webhook that wants it) to
that same transaction: the notification exists if and only if the change does.

Delivering: a background task claims due rows (a lease: next_attempt moves past the request
timeout, so exactly one replica holds a row at a time), posts each outside any transaction,
and records the outcome: DELIVERED on 2xx, else PENDING again after an exponential backoff,
or FAILED after the last attempt. A replica that dies mid-request leaves its rows to be
claimed again when the lease ends: delivery is at least once, and receivers de-duplicate on
the Signoff-Delivery header. A decision never waits for, nor fails because of, a webhook.

Retention: DELIVERED and FAILED rows older than the retention are deleted, a batch per
transaction, so the outbox holds about one retention's worth of notifications.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta

import httpx

from signoff.domain.errors import Unavailable
from signoff.domain.ids import new_id
from signoff.services import webhooks
from signoff.services.context import system_clock
from signoff.services.webhooks import RetryPolicy, Webhook
from signoff.store import outbox
from signoff.store.database import Database
from signoff.store.repository import Tx
from signoff.telemetry.metrics import WEBHOOK_DELIVERIES, WEBHOOK_LAG, WEBHOOK_PENDING

log = logging.getLogger("signoff.webhooks")

BATCH = 50  # rows claimed (and posted concurrently) at a time
PRUNE_BATCH = 500  # rows deleted per transaction: short ones, as SQLite has one writer
PRUNE_INTERVAL = 60.0  # seconds between looks for rows past their retention, at most

# Delivers a claimed row of a webhook whose format is not an HTTP POST (slack_interactive
# posts through the Slack Web API): '' when delivered, else what went wrong (then retried).
Sender = Callable[[Webhook, outbox.ClaimedDelivery], Awaitable[str]]


class Notifier:
    def __init__(
        self,
        db: Database,
        hooks: Sequence[Webhook],
        retry: RetryPolicy,
        *,
        retention: float = 0.0,
        poll_interval: float = 1.0,
        clock: Callable[[], datetime] = system_clock,
        senders: Mapping[str, Sender] | None = None,
    ) -> None:
        self.db = db
        self.senders = dict(senders or {})  # by webhook format
        self.webhooks = {hook.name: hook for hook in hooks}
        self.retry = retry
        self.retention = retention  # seconds; 0 keeps every row
        self.poll_interval = poll_interval
        self.clock = clock
        # A claim outlives the request it covers; if it lapses the row is simply sent again.
        self.lease = timedelta(seconds=2 * retry.timeout + 10)
        self._wake = asyncio.Event()

    # -- writing, inside the transaction of the change ----------------------------------------

    async def before_commit(self, tx: Tx) -> None:
        """Adds the notifications of this transaction's approval changes to it."""
        deliveries = []
        for change in tx.approval_changes:
            candidates = [
                hook for hook in self.webhooks.values() if webhooks.may_want(hook, change)
            ]
            if not candidates:
                continue
            gate_ids = [] if change.gate_id else await outbox.action_gates(tx, change.action_id)
            gates = webhooks.change_gates(change, gate_ids)
            for hook in candidates:
                if not webhooks.wants(hook, change, gates):
                    continue
                delivery_id = new_id("whd")
                try:
                    body = webhooks.body(hook, delivery_id, change, gates)
                except Exception:  # a notification is never worth failing the decision for
                    log.exception("webhook %s: no notification of %s", hook.name, change)
                    continue
                deliveries.append(
                    outbox.NewDelivery(
                        delivery_id=delivery_id,
                        webhook=hook.name,
                        tenant_id=change.tenant_id,
                        event=webhooks.event_name(change.kind),
                        action_id=change.action_id,
                        body=body,
                        create_time=change.time,
                    )
                )
        if deliveries:
            await outbox.enqueue(tx, deliveries)
            tx.after_commit.append(self._wake.set)  # deliver right away, not at the next poll

    # -- delivering, in the background ---------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Delivers until `stop` is set; a request under way is finished (or times out)."""
        stopping = asyncio.create_task(self._wake_on(stop))
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        async with httpx.AsyncClient(follow_redirects=False, timeout=self.retry.timeout) as client:
            while not stop.is_set():
                self._wake.clear()
                if self.retention and loop.time() >= next_prune:
                    next_prune = loop.time() + min(PRUNE_INTERVAL, self.retention)
                    try:
                        await self.prune()
                    except Unavailable:
                        pass  # Database logs the outage, once
                    except Exception:
                        log.exception("removing old webhook notifications failed; trying later")
                # Look (a read) for when the next row falls due: a retry, a new row, or a
                # claim another replica let lapse. Claiming takes a write transaction (on
                # SQLite, the one writer), so it happens only when something is due.
                wait = self.poll_interval
                try:
                    async with self.db.read() as tx:
                        WEBHOOK_PENDING.set(await outbox.pending_count(tx))
                        soonest = await outbox.earliest_attempt(tx, self.webhooks)
                    if soonest is not None:
                        due_in = (soonest - self.clock()).total_seconds()
                        if due_in > 0:
                            wait = min(wait, due_in)
                        elif await self.deliver_due(client):
                            continue  # look again at once: more may be due
                        # else due rows another replica is claiming right now: wait a poll
                except Unavailable:
                    pass  # Database logs the outage, once
                except Exception:
                    log.exception("webhook delivery tick failed; trying again shortly")
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
        await stopping

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def prune(self) -> int:
        """Deletes DELIVERED and FAILED rows created more than `retention` seconds ago."""
        created_before = self.clock() - timedelta(seconds=self.retention)
        removed = 0
        while True:
            async with self.db.write() as tx:
                deleted = await outbox.delete_finished(tx, created_before, PRUNE_BATCH)
            removed += deleted
            if deleted < PRUNE_BATCH:
                break
        if removed:
            log.info("webhooks: removed %d sent or FAILED notifications past retention", removed)
        return removed

    async def deliver_due(self, client: httpx.AsyncClient) -> int:
        """Claims and posts the due rows of a batch; returns how many it claimed."""
        now = self.clock()
        async with self.db.write() as tx:
            claimed = await outbox.claim(tx, self.webhooks, now, now + self.lease, BATCH)
        outcomes = await asyncio.gather(
            *(self._deliver(client, delivery) for delivery in claimed), return_exceptions=True
        )
        for delivery, outcome in zip(claimed, outcomes, strict=True):
            if isinstance(outcome, Exception):  # its claim lapses, and the row is sent again
                log.error("webhook delivery %s: %r", delivery.delivery_id, outcome)
        return len(claimed)

    async def _deliver(self, client: httpx.AsyncClient, delivery: outbox.ClaimedDelivery) -> None:
        hook = self.webhooks[delivery.webhook]
        send = self.senders.get(hook.format)
        if send is not None:
            error = await self._send(send, hook, delivery)
        else:
            body = delivery.body.encode()
            timestamp = int(self.clock().timestamp())
            headers = webhooks.headers(
                hook.secret, delivery.delivery_id, delivery.event, timestamp, body
            )
            error = await self._post(client, hook, body, headers)
        now = self.clock()
        delay = 0.0
        if not error:
            result, state, next_attempt = "delivered", outbox.DELIVERED, now
        elif delivery.attempt >= self.retry.max_attempts:
            result, state, next_attempt = "failed", outbox.FAILED, now
        else:
            delay = webhooks.retry_delay(delivery.attempt, self.retry)
            result, state, next_attempt = "retry", outbox.PENDING, now + timedelta(seconds=delay)
        async with self.db.write() as tx:
            recorded = await outbox.finish(
                tx,
                delivery,
                state=state,
                next_attempt=next_attempt,
                last_error=error,
                delivered_time=now if state == outbox.DELIVERED else None,
            )
        WEBHOOK_DELIVERIES.labels(hook.name, result).inc()
        what = (hook.name, f"approval.{delivery.event}", delivery.delivery_id, delivery.attempt)
        if result == "delivered":
            WEBHOOK_LAG.labels(hook.name).observe((now - delivery.create_time).total_seconds())
            log.info("webhook %s: %s %s delivered (attempt %d)", *what)
        elif result == "retry":
            log.warning(
                "webhook %s: %s %s attempt %d failed (%s); retry in %.1fs", *what, error, delay
            )
        else:
            log.error(
                "webhook %s: %s %s attempt %d failed (%s); giving up: the row stays FAILED "
                "in webhook_outbox",
                *what,
                error,
            )
        if not recorded:
            log.info("webhook %s: %s claimed again by another deliverer", hook.name, what[2])

    async def _send(self, send: Sender, hook: Webhook, delivery: outbox.ClaimedDelivery) -> str:
        try:
            async with asyncio.timeout(self.retry.timeout):
                return await send(hook, delivery)
        except TimeoutError:
            return f"no answer within {self.retry.timeout:g}s"
        except Exception as error:  # whatever went wrong, the answer is: retry
            log.exception("webhook %s: delivery %s failed", hook.name, delivery.delivery_id)
            return f"{type(error).__name__}: {str(error) or 'no detail'}"

    async def _post(
        self, client: httpx.AsyncClient, hook: Webhook, body: bytes, headers: dict[str, str]
    ) -> str:
        """'' on a 2xx answer, else what went wrong (never the URL: it may hold a token)."""
        try:
            async with asyncio.timeout(self.retry.timeout):
                async with client.stream("POST", hook.url, content=body, headers=headers) as answer:
                    if 200 <= answer.status_code < 300:
                        return ""
                    return f"HTTP {answer.status_code}"
        except TimeoutError:
            return f"no answer within {self.retry.timeout:g}s"
        except Exception as error:  # noqa: BLE001 - whatever went wrong, the answer is: retry
            message = str(error).replace(hook.url, "<url>") or "no detail"
            return f"{type(error).__name__}: {message}"
