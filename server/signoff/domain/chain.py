"""The per-instance hash chain: each event's hash covers its content and the previous
event's hash; the event that writes or changes a DecisionRecord carries the record's hash;
and each event seals the current state of its instance and of its action (the fields the
service acts on), so a row changed behind signoff's back no longer matches its chain.
Pure functions over plain dicts, so the server and an offline verifier agree."""

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from signoff.domain.canonical import sha256_of
from signoff.domain.models import Action, Event, Instance

# The fields of an event body, in the order they are written to exports.
EVENT_FIELDS = (
    "instance_id", "tenant_id", "revision", "type", "time", "instance_state", "action_id",
    "action_state", "outcome", "actor", "reason", "record_id", "record_sha256", "tool",
    "gate_id", "controls", "prev_hash",
)  # fmt: skip

# Fields hashed only when set (not absent and not ""): events written before a field
# existed keep their hashes. A new optional field is added here and in event_body.
OPTIONAL_FIELDS = ("trace_id", "budget", "instance_seal", "action_seal", "plan_sha256")
_UNSET = (None, "")


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
    optional = {
        "trace_id": event.trace_id,
        "budget": event.budget,
        "instance_seal": event.instance_seal,
        "action_seal": event.action_seal,
        "plan_sha256": event.plan_sha256,
    }
    body.update((key, value) for key, value in optional.items() if value not in _UNSET)
    return {**body, "hash": event.hash} if event.hash else body


def event_hash(body: dict[str, Any]) -> str:
    """sha256 over the RFC 8785 form of the event body (every field but `hash`; each of
    OPTIONAL_FIELDS only when it is set: not absent, "" or null)."""
    hashed = {key: body[key] for key in EVENT_FIELDS}
    for key in OPTIONAL_FIELDS:
        if body.get(key) not in _UNSET:
            hashed[key] = body[key]
    return sha256_of(hashed)


def record_hash(body: dict[str, Any]) -> str:
    return sha256_of(body)


# -- current state ---------------------------------------------------------------------------


def _time(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def instance_fields(instance: Instance) -> dict[str, Any]:
    """What the service acts on in an instance row, as its events seal it."""
    return {
        "instance_id": instance.instance_id,
        "tenant_id": instance.tenant_id,
        "request_id": instance.request_id,
        "envelope": instance.envelope,
        "envelope_sha256": instance.envelope_sha256,
        "state": instance.state.value,
        "tool_calls_used": instance.tool_calls_used,
        "cost_spent_cents": instance.cost_spent_cents,
        "cost_reserved_cents": instance.cost_reserved_cents,
        "created_by": instance.created_by,
        "create_time": _time(instance.create_time),
        # Sealed only when there is one, so instances sealed before it existed still match.
        **({"compiled_context": instance.compiled_context} if instance.compiled_context else {}),
    }


def action_fields(action: Action) -> dict[str, Any]:
    """What the service acts on in an action row, as its events seal it: everything but the
    current grant's token hash (a repeat of RequestDecision replaces it without an event),
    the timer's index (`next_due`, derived from the gates) and the traceparent."""
    return {
        "action_id": action.action_id,
        "instance_id": action.instance_id,
        "tenant_id": action.tenant_id,
        **action.proposal.as_json(),
        "cost_cents": action.cost_cents,
        "action_sha256": action.action_sha256,
        "proposed_sha256": action.proposed_sha256,
        "state": action.state.value,
        "gate_ids": list(action.gate_ids),
        "gates": [gate.as_json() for gate in action.gates],
        "decided_by": action.decided_by,
        "decision_reason": action.decision_reason,
        "create_time": _time(action.create_time),
        "decide_time": _time(action.decide_time),
        "policy": action.policy,
        "execution_evidence_ref": action.execution_evidence_ref,
        "grant_expires": _time(action.grant_expires),
    }


def _plain(value: Any) -> Any:
    """JSON as a database gives it back: an integral float is the integer (PostgreSQL's
    jsonb writes 1e16 as 10000000000000000)."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def seal(fields: dict[str, Any]) -> str:
    """The hash of a row's state: sha256 over compact JSON with sorted keys, ASCII only,
    integral numbers as integers. Not RFC 8785, which costs four times as much here: seals
    are computed on every decision, and only signoff computes and compares them."""
    text = json.dumps(_plain(fields), sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def instance_problem(
    fields: dict[str, Any],
    revision: int,
    chain_head: str,
    head: dict[str, Any] | None,
    beyond: bool,
) -> str:
    """Why an instance row (its sealed `fields`, `revision` and `chain_head`) disagrees with
    its newest event `head` (None: there is no event at `revision`); "" when it agrees.
    `beyond`: an event exists after `revision`."""
    if head is None:
        return f"the instance says its newest event is revision {revision}, which is missing"
    if beyond:
        return f"the instance says its newest event is revision {revision}, but later ones exist"
    if head.get("hash") != chain_head:
        return "the instance's chain head is not the hash of its newest event"
    if head.get("instance_state") != fields["state"]:
        return f"the instance is {fields['state']} but its chain says {head.get('instance_state')}"
    sealed = head.get("instance_seal", "")
    if sealed and sealed != seal(fields):
        return (
            "the instance's stored state (state, envelope, tool calls used, costs, creator) "
            "is not what its newest event sealed"
        )
    if not sealed and sha256_of(fields["envelope"]) != fields["envelope_sha256"]:
        # An event written before seals: the envelope is checked against its own hash.
        return "the instance's envelope does not match its envelope_sha256"
    return ""


def action_problem(fields: dict[str, Any], link: dict[str, Any] | None, superseded: bool) -> str:
    """Why an action row (its sealed `fields`) disagrees with `link`, the event it names as
    the one that last changed it (None: that event is missing); "" when it agrees.
    `superseded`: a later event of the instance names the action."""
    if link is None or link.get("action_id") != fields["action_id"]:
        return "the event that last changed it is missing or is about another action"
    if superseded:
        return "a later event changed it, but the stored action is an earlier state"
    if link.get("action_state") != fields["state"]:
        return f"it is {fields['state']} but its chain says {link.get('action_state')}"
    sealed = link.get("action_seal", "")
    if sealed and sealed != seal(fields):
        return "its stored state (params, gates, state, decision) is not what its event sealed"
    return ""


# -- verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Break:
    """A link that does not hold, and why. `revision` 0: not tied to one event (a record or
    an export line named in `problem`)."""

    instance_id: str
    revision: int
    problem: str


@dataclass(frozen=True)
class ActionRow:
    """An action row as it is verified: its sealed fields and the event it names."""

    fields: dict[str, Any]
    event_revision: int


@dataclass(frozen=True)
class InstanceRow:
    fields: dict[str, Any]
    revision: int
    chain_head: str


def instance_row(instance: Instance) -> InstanceRow:
    return InstanceRow(instance_fields(instance), instance.revision, instance.chain_head)


def action_row(action: Action) -> ActionRow:
    return ActionRow(action_fields(action), action.event_revision)


def verify_instance(
    instance_id: str,
    events: Iterable[dict[str, Any]],
    records: dict[str, dict[str, Any]],
    instance: InstanceRow | None = None,
    actions: Iterable[ActionRow] = (),
) -> tuple[int, list[Break]]:
    """Checks one instance's events (in the order given), its records and, when given, its
    current-state rows. Returns how many events held and every break found.

    Events must come as revisions 1, 2, 3 … each naming its predecessor's hash (the first
    break in the chain ends the walk: what follows it cannot be trusted). Every record an
    event names must exist, belong to this instance and the event's action, and have the
    hash the last event naming it carries; every record stored under the instance must be
    named by one of its events. The instance row must match its newest event and each
    action row the event that last changed it."""
    expected_revision, previous, checked = 1, "", 0
    breaks: list[Break] = []
    by_revision: dict[int, dict[str, Any]] = {}
    last_of_action: dict[str, int] = {}
    # record id -> [(revision, record_sha256, action_id)] of the events naming it
    named: dict[str, list[tuple[int, str, str]]] = {}
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
            breaks.append(Break(instance_id, revision, problem))
            break
        by_revision[revision] = body
        if body.get("action_id"):
            last_of_action[body["action_id"]] = revision
        if body.get("record_id"):
            named.setdefault(body["record_id"], []).append(
                (revision, body.get("record_sha256", ""), body.get("action_id", ""))
            )
        previous = body["hash"]
        expected_revision += 1
        checked += 1
    breaks += _record_breaks(instance_id, named, records)
    if instance is not None:
        head = by_revision.get(instance.revision)
        problem = instance_problem(
            instance.fields,
            instance.revision,
            instance.chain_head,
            head,
            any(revision > instance.revision for revision in by_revision),
        )
        if problem:
            breaks.append(Break(instance_id, instance.revision, problem))
    for row in actions:
        action_id = row.fields["action_id"]
        superseded = last_of_action.get(action_id, 0) > row.event_revision
        problem = action_problem(row.fields, by_revision.get(row.event_revision), superseded)
        if problem:
            breaks.append(Break(instance_id, row.event_revision, f"action {action_id}: {problem}"))
    return checked, breaks


def _record_breaks(
    instance_id: str,
    named: dict[str, list[tuple[int, str, str]]],
    records: dict[str, dict[str, Any]],
) -> list[Break]:
    breaks = []
    for record_id, namings in named.items():
        first, last = namings[0], namings[-1]
        body = records.get(record_id)
        problem = ""
        if body is None:
            problem = f"record {record_id} that event {first[0]} wrote is missing"
        elif record_hash(body) != last[1]:
            problem = f"record {record_id} does not match the hash that event {last[0]} carries"
        elif body.get("record_id") != record_id or body.get("instance_id") != instance_id:
            problem = f"record {record_id} says it is {body.get('record_id')} of instance " + str(
                body.get("instance_id")
            )
        elif body.get("action_id") != first[2] or body.get("revision") != first[0]:
            problem = f"record {record_id} names another action or revision than event {first[0]}"
        if problem:
            breaks.append(Break(instance_id, last[0] if body is not None else first[0], problem))
    for record_id in records.keys() - named.keys():
        breaks.append(
            Break(instance_id, 0, f"record {record_id} is stored here but no event names it")
        )
    return breaks


# -- exports and anchors ---------------------------------------------------------------------


def heads_digest(heads: list[dict[str, Any]]) -> str:
    """The digest of a list of chain heads (an export's manifest, an anchor)."""
    return sha256_of(heads)


def anchor(tenant: str, time: datetime, heads: list[dict[str, Any]]) -> dict[str, Any]:
    """What `signoff audit anchor` prints: each instance's newest revision and hash, with
    counts, time and one digest over them, to be kept where the database owners cannot
    write. `heads`: {instance_id, tenant_id, create_time, revision, head_hash}."""
    return {
        "kind": "anchor",
        "tenant": tenant or "*",
        "time": _time(time),
        "instances": len(heads),
        "events": sum(int(h["revision"]) for h in heads),
        "digest": heads_digest(heads),
        "heads": heads,
    }


def verify_against(
    saved: dict[str, Any],
    events: dict[str, dict[int, str]],
    present: list[dict[str, Any]],
    covered: Callable[[dict[str, Any]], bool] = lambda head: True,
) -> list[Break]:
    """Every instance the anchor `saved` saw must still extend it: its event at the anchored
    revision still has the anchored hash. `events`: instance id -> {revision: hash} of what
    is verified now; `present`: those instances ({instance_id, tenant_id, create_time}):
    one created before the anchor that the anchor does not list was added since. Only heads
    and instances `covered` (what is verified covers them) are compared."""
    heads = saved.get("heads", [])
    if saved.get("kind") != "anchor" or saved.get("digest") != heads_digest(heads):
        return [Break("", 0, "the anchor is not an anchor or does not match its own digest")]
    breaks = []
    anchored = {head["instance_id"] for head in heads}
    for head in filter(covered, heads):
        instance_id, revision = head["instance_id"], int(head["revision"])
        found = events.get(instance_id)
        if found is None:
            breaks.append(Break(instance_id, revision, "the anchored instance is missing"))
        elif found.get(revision) != head["head_hash"]:
            breaks.append(
                Break(
                    instance_id,
                    revision,
                    f"the chain no longer extends the anchor's head {head['head_hash']}",
                )
            )
    moment = datetime.fromisoformat(str(saved.get("time")))
    for instance in filter(covered, present):
        later = datetime.fromisoformat(str(instance["create_time"])) >= moment
        if instance["instance_id"] not in anchored and not later:
            breaks.append(
                Break(instance["instance_id"], 0, "created before the anchor was taken, not in it")
            )
    return breaks
