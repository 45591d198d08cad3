"""Gauges read from the database while metrics are served: every replica reports the same,
database-wide value (aggregate them with max, not sum)."""

import asyncio
import logging

from signoff.domain.errors import Unavailable
from signoff.services.context import Context
from signoff.telemetry import metrics

log = logging.getLogger("signoff.metrics")


async def refresh_waiting(ctx: Context, shown: set[str]) -> set[str]:
    """Sets signoff_approvals_waiting for every gate; returns the gates it has shown. A gate
    that has emptied since is set to 0, not left at its last count."""
    async with ctx.db.read() as tx:
        waiting = await tx.waiting_by_gate()
    # The bundle's gates always have a series; a gate dropped from it keeps its (zero) one.
    gates = shown | {gate.gate_id for gate in ctx.policy.gates()} | set(waiting)
    for gate_id in gates:
        metrics.APPROVALS_WAITING.labels(gate_id).set(waiting.get(gate_id, 0))
    return gates


async def run(ctx: Context, interval: float, stop: asyncio.Event) -> None:
    """Refreshes the database gauges every `interval` seconds until `stop`."""
    shown: set[str] = set()
    while not stop.is_set():
        try:
            shown = await refresh_waiting(ctx, shown)
        except Unavailable:
            pass  # a restarting database: Database logs the outage, once; the next round tries
        except Exception:
            log.exception("reading the waiting approvals failed")
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass
