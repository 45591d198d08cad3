"""Verifying an instance's hash chain and current state, exporting chains as JSONL for
offline checks (with a manifest), and anchoring chain heads to check against later."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from signoff.domain.chain import (
    ActionRow,
    Break,
    InstanceRow,
    action_fields,
    action_row,
    anchor,
    event_body,
    heads_digest,
    instance_fields,
    instance_row,
    verify_against,
    verify_instance,
)
from signoff.domain.models import Instance, Principal
from signoff.services.context import Context
from signoff.services.instances import visible
from signoff.store.database import Database


@dataclass(frozen=True)
class ChainReport:
    events_checked: int
    records_checked: int
    head_hash: str
    # Every break found, the first one first; empty when intact.
    broken: list[Break]


async def verify_chain(ctx: Context, who: Principal, instance_id: str) -> ChainReport:
    """The instance's events, records, instance row and action rows against its chain."""
    async with ctx.db.read() as tx:
        instance = visible(await tx.get_instance(instance_id), who, instance_id)
        events = await tx.list_events(instance_id, 0, 1_000_000)
        records = await tx.record_bodies(instance_id)
        actions = await tx.actions_of(instance_id)
    checked, broken = verify_instance(
        instance_id,
        (event_body(e) for e in events),
        records,
        instance_row(instance),
        [action_row(a) for a in actions],
    )
    return ChainReport(checked, len(records), instance.chain_head, broken)


async def _instances(
    db: Database,
    tenant_id: str = "",
    instance_id: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> AsyncIterator[Instance]:
    after = 0
    while True:
        async with db.read() as tx:
            batch = await tx.instances_for_export(tenant_id, instance_id, since, until, after, 100)
        for seq, instance in batch:
            after = seq
            yield instance
        if len(batch) < 100:
            return


async def export_lines(
    db: Database,
    tenant_id: str = "",
    instance_id: str = "",
    since: datetime | None = None,
    until: datetime | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """For each instance (created in [since, until)): an instance line with its chain head
    and sealed state (with the envelope), its events in revision order, its actions' sealed
    state, then its records as stored. Last, a manifest: the scope, each instance's head
    and counts, and a digest over them."""
    entries: list[dict[str, Any]] = []
    async for instance in _instances(db, tenant_id, instance_id, since, until):
        async with db.read() as tx:
            events = await tx.list_events(instance.instance_id, 0, 1_000_000)
            records = await tx.record_bodies(instance.instance_id)
            actions = await tx.actions_of(instance.instance_id)
        yield {
            "kind": "instance",
            "instance_id": instance.instance_id,
            "tenant_id": instance.tenant_id,
            "head_hash": instance.chain_head,
            "revision": instance.revision,
            "state": instance_fields(instance),
        }
        for event in events:
            yield {"kind": "event", **event_body(event)}
        for action in actions:
            yield {
                "kind": "action",
                "instance_id": instance.instance_id,
                "action_id": action.action_id,
                "event_revision": action.event_revision,
                "state": action_fields(action),
            }
        for record_id, body in sorted(records.items()):
            yield {
                "kind": "record",
                "instance_id": instance.instance_id,
                "record_id": record_id,
                "body": body,
            }
        entries.append(
            {
                "instance_id": instance.instance_id,
                "tenant_id": instance.tenant_id,
                "create_time": instance_fields(instance)["create_time"],
                "revision": instance.revision,
                "head_hash": instance.chain_head,
                "events": len(events),
                "actions": len(actions),
                "records": len(records),
            }
        )
    yield {
        "kind": "manifest",
        "scope": {
            "tenant": tenant_id,
            "instance": instance_id,
            "since": since.isoformat() if since else "",
            "until": until.isoformat() if until else "",
        },
        "count": len(entries),
        "events": sum(e["events"] for e in entries),
        "digest": heads_digest(entries),
        "instances": entries,
    }


async def anchor_heads(db: Database, tenant_id: str, now: datetime) -> dict[str, Any]:
    """What `signoff audit anchor` prints: every instance's (of a tenant, or all) newest
    revision and hash at `now`."""
    heads = [
        {
            "instance_id": instance.instance_id,
            "tenant_id": instance.tenant_id,
            "create_time": instance_fields(instance)["create_time"],
            "revision": instance.revision,
            "head_hash": instance.chain_head,
        }
        async for instance in _instances(db, tenant_id)
    ]
    return anchor(tenant_id, now, heads)


@dataclass
class _Exported:
    line: dict[str, Any]
    events: list[dict[str, Any]]
    actions: list[ActionRow]
    records: dict[str, dict[str, Any]]


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _export_break(problem: str) -> Break:
    return Break("", 0, problem)


def verify_export(
    lines: list[dict[str, Any]], against: dict[str, Any] | None = None
) -> tuple[int, int, list[Break]]:
    """Checks an export offline: returns instances and events checked and every break.
    `against`: an anchor the export's chains must still extend."""
    instances: dict[str, _Exported] = {}
    manifest: dict[str, Any] | None = None
    breaks: list[Break] = []
    for number, line in enumerate(lines, 1):
        kind, instance_id = line.get("kind"), line.get("instance_id", "")
        if manifest is not None:
            breaks.append(_export_break(f"line {number}: after the manifest"))
            break
        if kind == "manifest":
            manifest = line
        elif kind == "instance":
            if instance_id in instances:
                breaks.append(Break(instance_id, 0, f"line {number}: instance repeated"))
                break
            instances[instance_id] = _Exported(line, [], [], {})
        elif instance_id not in instances:
            breaks.append(Break(instance_id, 0, f"line {number}: before its instance line"))
            break
        elif kind == "event":
            instances[instance_id].events.append({k: v for k, v in line.items() if k != "kind"})
        elif kind == "action":
            instances[instance_id].actions.append(
                ActionRow(line.get("state", {}), int(line.get("event_revision", 0)))
            )
        elif kind == "record":
            instances[instance_id].records[line["record_id"]] = line["body"]
        else:
            breaks.append(Break(instance_id, 0, f"line {number}: unknown kind {kind!r}"))
            break
    if breaks:
        return len(instances), 0, breaks
    total = 0
    for instance_id, entry in instances.items():
        row = None  # an export made before instance lines carried their state
        if "state" in entry.line:
            row = InstanceRow(
                entry.line["state"],
                int(entry.line.get("revision", 0)),
                entry.line.get("head_hash", ""),
            )
        checked, found = verify_instance(
            instance_id, entry.events, entry.records, row, entry.actions
        )
        total += checked
        breaks += found
    breaks += _manifest_breaks(manifest, instances)
    if against is not None:
        breaks += _anchor_breaks(against, manifest or {}, instances)
    return len(instances), total, breaks


def _counts(instance_id: str, entry: _Exported) -> dict[str, Any]:
    return {
        "instance_id": instance_id,
        "tenant_id": entry.line.get("tenant_id", ""),
        "create_time": entry.line.get("state", {}).get("create_time"),
        "revision": int(entry.line.get("revision", 0)),
        "head_hash": entry.line.get("head_hash", ""),
        "events": len(entry.events),
        "actions": len(entry.actions),
        "records": len(entry.records),
    }


def _manifest_breaks(
    manifest: dict[str, Any] | None, instances: dict[str, _Exported]
) -> list[Break]:
    """The export must end with its manifest, list exactly its instances with their counts
    and heads, and match the manifest's digest."""
    if manifest is None:
        return [_export_break("no manifest: the export was cut off (or made before manifests)")]
    listed = manifest.get("instances", [])
    breaks = []
    if manifest.get("digest") != heads_digest(listed) or manifest.get("count") != len(listed):
        breaks.append(_export_break("the manifest does not match its own digest"))
    seen = set()
    for entry in listed:
        instance_id = entry.get("instance_id", "")
        seen.add(instance_id)
        found = instances.get(instance_id)
        if found is None:
            breaks.append(Break(instance_id, 0, "in the manifest, but missing from the export"))
            continue
        counts = _counts(instance_id, found)
        wrong = [key for key in ("revision", "head_hash", "events", "actions", "records")
                 if counts[key] != entry.get(key)]  # fmt: skip
        if wrong:
            breaks.append(
                Break(
                    instance_id,
                    int(entry.get("revision", 0)),
                    f"differs from the manifest: {', '.join(wrong)} "
                    f"({', '.join(f'{counts[k]} for {entry.get(k)}' for k in wrong)})",
                )
            )
    for instance_id in instances.keys() - seen:
        breaks.append(Break(instance_id, 0, "in the export, but not in its manifest"))
    return breaks


def _anchor_breaks(
    saved: dict[str, Any], manifest: dict[str, Any], instances: dict[str, _Exported]
) -> list[Break]:
    """Checks the export against an anchor, for the instances the export covers: its scope
    (tenant, instance, creation period) as the manifest says."""
    scope = manifest.get("scope", {})

    def covered(head: dict[str, Any]) -> bool:
        created = _moment(head["create_time"])
        return (
            (saved.get("tenant") in ("*", head["tenant_id"]))
            and scope.get("tenant", "") in ("", head["tenant_id"])
            and scope.get("instance", "") in ("", head["instance_id"])
            and (not scope.get("since") or _moment(scope["since"]) <= created)
            and (not scope.get("until") or created < _moment(scope["until"]))
        )

    events = {
        instance_id: {int(e["revision"]): e.get("hash", "") for e in entry.events}
        for instance_id, entry in instances.items()
    }
    present = [_counts(instance_id, entry) for instance_id, entry in instances.items()]
    return verify_against(saved, events, present, covered)
