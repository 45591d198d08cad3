"""The per-instance hash chain: each event's hash covers its content and the previous
event's hash, and the event that writes or changes a DecisionRecord carries the record's
hash. Pure functions over plain dicts, so the server and an offline verifier agree."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from signoff.domain.canonical import sha256_of
from signoff.domain.models import Event

# The fields of an event body, in the order they are written to exports.
EVENT_FIELDS = (
    "instance_id", "tenant_id", "revision", "type", "time", "instance_state", "action_id",
    "action_state", "outcome", "actor", "reason", "record_id", "record_sha256", "tool",
    "gate_id", "controls", "prev_hash",
)  # fmt: skip


def event_body(event: Event) -> dict[str, Any]:
    """The event as it is hashed and exported (with `hash` once it has one)."""
    body = {
        "instance_id": event.instance_id,
        "tenant_id": event.tenant_id,
        "revision": event.revision,
        "type": event.type.value,
        "time": event.time.isoformat(),
        "instance_state": event.instance_state.value,
        "action_id": event.action_id,
        "action_state": event.action_state.value if event.action_state else None,
        "outcome": event.outcome.value if event.outcome else None,
        "actor": event.actor,
        "reason": event.reason,
        "record_id": event.record_id,
        "record_sha256": event.record_sha256,
        "tool": event.tool,
        "gate_id": event.gate_id,
        "controls": event.controls,
        "prev_hash": event.prev_hash,
    }
    if event.trace_id:
        # Only when set: events written before trace ids existed keep their hashes.
        body["trace_id"] = event.trace_id
    if event.budget is not None:
        # Likewise: events written before budgets were reported have none.
        body["budget"] = event.budget
    return {**body, "hash": event.hash} if event.hash else body


def event_hash(body: dict[str, Any]) -> str:
    """sha256 over the RFC 8785 form of the event body (every field but `hash`; `trace_id`
    only when it is not empty, `budget` only when present)."""
    hashed = {key: body[key] for key in EVENT_FIELDS}
    if body.get("trace_id", "") != "":  # anything else but absent or "" is hashed
        hashed["trace_id"] = body["trace_id"]
    if body.get("budget") is not None:
        hashed["budget"] = body["budget"]
    return sha256_of(hashed)


def record_hash(body: dict[str, Any]) -> str:
    return sha256_of(body)


@dataclass(frozen=True)
class Break:
    """The first link that does not hold, and why."""

    instance_id: str
    revision: int
    problem: str


def verify_instance(
    instance_id: str, events: Iterable[dict[str, Any]], records: dict[str, dict[str, Any]]
) -> tuple[int, Break | None]:
    """Checks one instance's events (in the order given) and its records.

    Returns how many events were checked and the first break, if any. Events must come as
    revisions 1, 2, 3 … each naming its predecessor's hash; every record must have the hash
    the last event that wrote it carries."""
    expected_revision, previous, checked = 1, "", 0
    last_record_hash: dict[str, tuple[int, str]] = {}
    for body in events:
        revision = int(body.get("revision", -1))
        problem = ""
        if revision != expected_revision:
            gap = "missing" if revision > expected_revision else "out of order or repeated"
            problem = f"expected revision {expected_revision}, found {revision} (events {gap})"
            revision = expected_revision
        elif body.get("prev_hash") != previous:
            problem = "prev_hash does not name the previous event"
        elif body.get("hash") != event_hash(body):
            problem = "the event's content does not match its hash"
        if problem:
            return checked, Break(instance_id, revision, problem)
        if body.get("record_id"):
            last_record_hash[body["record_id"]] = (revision, body["record_sha256"])
        previous = body["hash"]
        expected_revision += 1
        checked += 1
    for record_id, body in records.items():
        if record_id not in last_record_hash:
            return checked, Break(instance_id, 0, f"record {record_id} is not in the chain")
        revision, expected = last_record_hash[record_id]
        if record_hash(body) != expected:
            problem = f"record {record_id} does not match the hash that event {revision} carries"
            return checked, Break(instance_id, revision, problem)
    return checked, None
