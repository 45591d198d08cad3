"""Gate timeouts, escalations and reminders. Timers live in the database (actions.next_due),
so they survive restarts; each fires once, under the instance lock, even with several
servers (PostgreSQL: an instance another server holds is skipped, not waited for)."""

import asyncio
import logging
from datetime import datetime
from functools import partial

from signoff.domain.errors import StateTampered, Unavailable
from signoff.domain.models import Action, Instance
from signoff.domain.states import ActionState, EventType, GateState
from signoff.policy.gates import OnTimeout
from signoff.services.context import Context
from signoff.services.gating import open_gate
from signoff.services.settling import settle
from signoff.store.unit import Repository
from signoff.telemetry import metrics

log = logging.getLogger("signoff.timers")


async def fire_due(ctx: Context, now: datetime | None = None, limit: int = 200) -> int:
    """Fires every deadline and reminder due at `now`; returns how many actions changed."""
    now = now or ctx.clock()
    async with ctx.db.read() as tx:
        due = await tx.due_actions(now, limit)
    fired = 0
    for instance_id, action_id in due:
        try:
            async with ctx.db.write() as tx:
                instance = await tx.try_lock_instance(instance_id)
                action = await tx.get_action(action_id)
                if instance is None or action is None:
                    continue  # another server holds it and fires it
                if action.state is ActionState.WAITING_FOR_HUMAN and await _fire(
                    ctx, tx, instance, action, now
                ):
                    await tx.save_instance(instance)
                    fired += 1
        except Unavailable:
            raise  # the database is down: so it is for every other timer
        except StateTampered as tampered:  # fails closed, in one line per tick
            log.error("timer for action %s not fired: %s", action_id, tampered.message)
        except Exception:  # one bad action must not stop every other timer
            log.exception("timer for action %s failed; it is retried next tick", action_id)
    return fired


async def _fire(
    ctx: Context, tx: Repository, instance: Instance, action: Action, now: datetime
) -> bool:
    changed = False
    for status in list(action.waiting_gates()):
        gate = ctx.policy.find_gate(status.gate_id)
        if gate is None:
            # The bundle changed under a waiting action: nobody may approve it, so it expires.
            log.warning(
                "gate %s is no longer defined; expiring %s", status.gate_id, action.action_id
            )
            await _expire(tx, instance, action, status.gate_id, now)
            return True
        if status.deadline <= now:
            changed = True
            if gate.on_timeout is OnTimeout.ESCALATE:
                status.move(GateState.ESCALATED)
                action.gates.append(open_gate(ctx.policy.gate(gate.escalate_to), now, gate.gate_id))
                action.gate_ids.append(gate.escalate_to)
                await tx.save_action(action, expected_state=action.state)
                tx.after_commit.append(partial(metrics.record_timeout, gate.gate_id, "escalated"))
                await tx.append_event(
                    instance,
                    EventType.ACTION_ESCALATED,
                    now,
                    action=action,
                    actor="timer",
                    reason=f"{gate.gate_id} timed out; escalated to {gate.escalate_to}",
                    gate_id=gate.escalate_to,
                )
            else:
                await _expire(tx, instance, action, status.gate_id, now)
                return True
        elif status.next_reminder is not None and status.next_reminder <= now:
            changed = True
            status.reminders_sent += 1
            later = gate.reminders[status.reminders_sent :]
            status.next_reminder = status.opened + later[0] if later else None
            await tx.save_action(action, expected_state=action.state)
            await tx.append_event(
                instance,
                EventType.ACTION_REMINDER,
                now,
                action=action,
                actor="timer",
                reason=f"{gate.gate_id} still waits (deadline {status.deadline.isoformat()})",
                gate_id=gate.gate_id,
            )
    return changed


async def _expire(
    tx: Repository, instance: Instance, action: Action, gate_id: str, now: datetime
) -> None:
    """No decision in time: EXPIRED, which is never a human rejection."""
    tx.after_commit.append(partial(metrics.record_timeout, gate_id, "expired"))
    reason = f"{gate_id} was not decided in time"
    await settle(
        tx,
        instance,
        action,
        ActionState.EXPIRED,
        now,
        actor="timer",
        reason=reason,
        timed_out=gate_id,
    )


async def run(ctx: Context, interval: float, stop: asyncio.Event) -> None:
    """The server's timer loop: fire what is due, then sleep a little."""
    while not stop.is_set():
        try:
            while await fire_due(ctx) > 0:
                pass  # more may be due
        except Unavailable:
            pass  # Database logs the outage, once
        except Exception:
            log.exception("timer tick failed")
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass
