"""Verifying an instance's hash chain, and exporting chains as JSONL for offline checks."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from signoff.domain.chain import Break, event_body, verify_instance
from signoff.domain.models import Principal
from signoff.services.context import Context
from signoff.services.instances import visible
from signoff.store.database import Database


@dataclass(frozen=True)
class ChainReport:
    events_checked: int
    records_checked: int
    head_hash: str
    broken: Break | None


async def verify_chain(ctx: Context, who: Principal, instance_id: str) -> ChainReport:
    async with ctx.db.read() as tx:
        instance = visible(await tx.get_instance(instance_id), who, instance_id)
        events = await tx.list_events(instance_id, 0, 1_000_000)
        records = await tx.record_bodies(instance_id)
    checked, broken = verify_instance(instance_id, (event_body(e) for e in events), records)
    if broken is None and events and events[-1].hash != instance.chain_head:
        broken = Break(instance_id, events[-1].revision, "the chain head does not match")
    return ChainReport(checked, len(records), instance.chain_head, broken)


async def export_lines(
    db: Database,
    tenant_id: str = "",
    instance_id: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """For each instance (created in [since, until)): an instance line naming its chain
    head, its events in revision order, then its records as stored."""
    after = 0
    while True:
        async with db.read() as tx:
            batch = await tx.instances_for_export(tenant_id, instance_id, since, until, after, 100)
        for seq, instance in batch:
            after = seq
            async with db.read() as tx:
                events = await tx.list_events(instance.instance_id, 0, 1_000_000)
                records = await tx.record_bodies(instance.instance_id)
            yield {
                "kind": "instance",
                "instance_id": instance.instance_id,
                "tenant_id": instance.tenant_id,
                "head_hash": instance.chain_head,
            }
            for event in events:
                yield {"kind": "event", **event_body(event)}
            for record_id, body in sorted(records.items()):
                yield {
                    "kind": "record",
                    "instance_id": instance.instance_id,
                    "record_id": record_id,
                    "body": body,
                }
        if len(batch) < 100:
            return


def verify_export(lines: list[dict[str, Any]]) -> tuple[int, int, Break | None]:
    """Checks an export offline: returns instances and events checked and the first break."""
    instances: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for number, line in enumerate(lines, 1):
        kind, instance_id = line.get("kind"), line.get("instance_id", "")
        if kind == "instance":
            if instance_id in instances:
                return len(order), 0, Break(instance_id, 0, f"line {number}: instance repeated")
            instances[instance_id] = {
                "head": line.get("head_hash", ""),
                "events": [],
                "records": {},
            }
            order.append(instance_id)
        elif instance_id not in instances:
            return len(order), 0, Break(instance_id, 0, f"line {number}: before its instance line")
        elif kind == "event":
            instances[instance_id]["events"].append(line)
        elif kind == "record":
            instances[instance_id]["records"][line["record_id"]] = line["body"]
        else:
            return len(order), 0, Break(instance_id, 0, f"line {number}: unknown kind {kind!r}")
    total = 0
    for instance_id in order:
        entry = instances[instance_id]
        events = [{k: v for k, v in e.items() if k != "kind"} for e in entry["events"]]
        checked, broken = verify_instance(instance_id, events, entry["records"])
        total += checked
        if broken is None and (events[-1]["hash"] if events else "") != entry["head"]:
            last = events[-1]["revision"] if events else 0
            broken = Break(
                instance_id, last + 1, "events after this one are missing (head differs)"
            )
        if broken is not None:
            return len(order), total, broken
    return len(order), total, None
