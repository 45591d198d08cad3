"""Queries, one method each, on one open transaction: SQLAlchemy Core statements, run on
the driver directly (store/execution.py)."""

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)

from signoff.domain import trail
from signoff.domain.chain import (
    action_fields,
    action_problem,
    instance_fields,
    instance_problem,
    record_hash,
    seal,
)
from signoff.domain.errors import ConcurrentChange, StateTampered
from signoff.domain.gates import PARTY_PATHS
from signoff.domain.models import (
    Action,
    Approval,
    ApprovalChange,
    DecisionRecord,
    Event,
    GateStatus,
    Instance,
    Json,
    Vote,
)
from signoff.domain.plans import StepUse, SubmittedPlan
from signoff.domain.states import (
    ActionState,
    DecisionStatus,
    EventType,
    InstanceState,
    Outcome,
    Verdict,
)
from signoff.store.execution import Connection, Row
from signoff.store.mapping import Mapper
from signoff.store.schema import (
    actions,
    approval_changes,
    decision_records,
    events,
    instances,
    plan_step_uses,
    plans,
    votes,
)
from signoff.telemetry import tracing

# Each still-waiting gate of each waiting action, counted by gate. The states are literals,
# not parameters, so that the planners can use the partial indexes on waiting actions.
_WAITING_BY_GATE = {
    "postgresql": """
        SELECT gate ->> 'gate_id' AS gate_id, count(*) AS waiting
        FROM actions CROSS JOIN LATERAL jsonb_array_elements(actions.gates) AS gate
        WHERE actions.state = 'WAITING_FOR_HUMAN' AND gate ->> 'state' = 'WAITING'
        GROUP BY 1""",
    "sqlite": """
        SELECT json_extract(gate.value, '$.gate_id') AS gate_id, count(*) AS waiting
        FROM actions, json_each(actions.gates) AS gate
        WHERE actions.state = 'WAITING_FOR_HUMAN'
          AND json_extract(gate.value, '$.state') = 'WAITING'
        GROUP BY 1""",
}


# The statements of the hot paths, built once. Executed with a dict of values, SQLAlchemy
# finds their compiled form by a cache key it has already computed; building a statement per
# call (select(…).where(…), insert(…).values(…)) costs more CPU than the database work.
_INSTANCE = select(instances).where(instances.c.instance_id == bindparam("instance_id"))
# An instance with what its newest event sealed, read in the same statement: a write checks
# the row against it before acting (see _checked_instance).
_head = events.alias("head")
_sealer = events.alias("sealer")
_later = events.alias("later")


def _event_at(table: Any, event: Any, revision: Any) -> Any:
    """`table` outer-joined with its instance's event at `revision`."""
    return table.outerjoin(
        event, and_(event.c.instance_id == table.c.instance_id, event.c.revision == revision)
    )


def _later_event(table: Any, revision: Any, *more: Any) -> Any:
    """Whether an event of the instance of `table`'s row comes after `revision`."""
    return exists().where(
        _later.c.instance_id == table.c.instance_id, _later.c.revision > revision, *more
    )


# Also whether the instance has a submitted plan, so that a call on an instance without
# any (most) need not read its plans, and how many of its actions wait for a human, so that
# a decision need not read them to know whether the instance still waits. Plans and
# actions change only under the instance's lock with an event, so a lock that waited for
# such a change sees the instance ahead of the event it joined, and reads all of this
# again (_checked_instance).
_SEALED_INSTANCES = select(
    instances,
    _head.c.hash.label("head_hash"),
    _head.c.instance_state.label("head_state"),
    _head.c.instance_seal.label("head_seal"),
    _later_event(instances, instances.c.revision).label("beyond"),
    exists().where(plans.c.instance_id == instances.c.instance_id).label("has_plans"),
    select(func.count())
    .where(
        actions.c.instance_id == instances.c.instance_id,
        actions.c.state == literal_column("'WAITING_FOR_HUMAN'"),
    )
    .scalar_subquery()
    .label("waiting_actions"),
).select_from(_event_at(instances, _head, instances.c.revision))
_INSTANCE_SEALED = _SEALED_INSTANCES.where(instances.c.instance_id == bindparam("instance_id"))
# Serializes every change to one instance, so revisions follow commit order (PostgreSQL;
# SQLite serializes all writers with BEGIN IMMEDIATE).
#
# Lock order: a transaction locks the instance first, and only then reads (and writes) its
# actions. No writer locks an action row before its instance (an UPDATE of an action takes
# that row's lock, but always under its instance's lock), so two transactions never wait
# for each other in opposite orders.
_INSTANCE_LOCKED = _INSTANCE_SEALED.with_for_update(of=instances)
# The instance of an action, found by the action's id (which never changes instance), to
# lock it before the action is read: the read that follows sees every decision that
# committed before the lock was granted, so the action is read once.
_INSTANCE_OF_ACTION_SEALED = _SEALED_INSTANCES.where(
    instances.c.instance_id
    == select(actions.c.instance_id)
    .where(actions.c.action_id == bindparam("action_id"))
    .scalar_subquery()
)
_INSTANCE_OF_ACTION_LOCKED = _INSTANCE_OF_ACTION_SEALED.with_for_update(of=instances)

_INSTANCE_TRY_LOCK = _INSTANCE_SEALED.with_for_update(of=instances, skip_locked=True)
_LOCKING = (_INSTANCE_LOCKED, _INSTANCE_TRY_LOCK, _INSTANCE_OF_ACTION_LOCKED)
_SAVE_INSTANCE = update(instances).where(instances.c.instance_id == bindparam("match_instance"))
# Actions with the event that last changed them (and whether a later one names them), read
# in the same statement: see _checked_action.
_ACTIONS_SEALED = select(
    actions,
    _sealer.c.action_id.label("sealer_action_id"),
    _sealer.c.action_state.label("sealer_state"),
    _sealer.c.action_seal.label("sealer_seal"),
    _later_event(
        actions, actions.c.event_revision, _later.c.action_id == actions.c.action_id
    ).label("superseded"),
).select_from(_event_at(actions, _sealer, actions.c.event_revision))
_ACTION = _ACTIONS_SEALED.where(actions.c.action_id == bindparam("action_id"))
_ACTION_BY_CALL = _ACTIONS_SEALED.where(
    actions.c.instance_id == bindparam("instance_id"),
    actions.c.tool_call_id == bindparam("tool_call_id"),
)
_SAVE_ACTION = update(actions).where(
    actions.c.action_id == bindparam("match_action"),
    actions.c.state == bindparam("match_state"),
)
_SAVE_GRANT = (
    update(actions)
    .where(
        actions.c.action_id == bindparam("match_action"),
        actions.c.state == bindparam("match_state"),
    )
    .values(grant_sha256=bindparam("grant_sha256"), grant_expires=bindparam("grant_expires"))
)
_EVENTS_AFTER = (
    select(events)
    .where(
        events.c.instance_id == bindparam("instance_id"),
        events.c.revision > bindparam("after_revision"),
    )
    .order_by(events.c.revision)
    .limit(bindparam("limit"))
)
_VOTES = select(votes).where(votes.c.action_id == bindparam("action_id")).order_by(votes.c.seq)
# The votes on an action and the vote of a request (on whichever action), in one read.
_VOTES_AND_REQUEST = (
    select(votes)
    .where(
        or_(
            votes.c.action_id == bindparam("action_id"),
            and_(
                votes.c.tenant_id == bindparam("tenant_id"),
                votes.c.request_id == bindparam("request_id"),
            ),
        )
    )
    .order_by(votes.c.seq)
)
_VOTE_BY_REQUEST = select(votes).where(
    votes.c.tenant_id == bindparam("tenant_id"), votes.c.request_id == bindparam("request_id")
)
_RECORD = select(decision_records.c.body).where(
    decision_records.c.record_id == bindparam("record_id")
)
# A record with the hash the newest event naming it carries: a record that is about to
# change (its execution attached) is checked first, so that its new hash cannot bless an
# edit made behind signoff's back.
_RECORD_FOR_ACTION = select(
    decision_records.c.record_id,
    decision_records.c.instance_id,
    decision_records.c.body,
    select(_later.c.record_sha256)
    .where(
        _later.c.instance_id == decision_records.c.instance_id,
        _later.c.record_id == decision_records.c.record_id,
    )
    .order_by(_later.c.revision.desc())
    .limit(1)
    .scalar_subquery()
    .label("sealed"),
).where(decision_records.c.action_id == bindparam("action_id"))
_INSERT = {
    table.name: insert(table)
    for table in (instances, actions, events, votes, decision_records, approval_changes)
}
# Submitted plans and the uses of their steps (SubmitPlan, RequestDecision).
_INSERT_PLAN = insert(plans)
_PLAN = select(plans).where(
    plans.c.instance_id == bindparam("instance_id"), plans.c.plan_id == bindparam("plan_id")
)
_PLANS_OF = (
    select(plans).where(plans.c.instance_id == bindparam("instance_id")).order_by(plans.c.seq)
)
_SAVE_PLAN = (
    update(plans)
    .where(
        plans.c.instance_id == bindparam("match_instance"),
        plans.c.plan_id == bindparam("match_plan"),
    )
    .values(plan=bindparam("new_plan"))
)
_INSERT_STEP_USE = insert(plan_step_uses)
_STEP_USES = select(plan_step_uses).where(plan_step_uses.c.instance_id == bindparam("instance_id"))
_NEXT_FEED_CURSOR = text(
    "INSERT INTO approval_feeds (tenant_id, last_cursor) VALUES (:t, 1) "
    "ON CONFLICT (tenant_id) DO UPDATE "
    "SET last_cursor = approval_feeds.last_cursor + 1 RETURNING last_cursor"
)


class Tx:
    def __init__(self, connection: Connection, dialect: str) -> None:
        self.connection = connection
        self.dialect = dialect
        # Events and approval changes appended in this transaction, published after commit.
        self.events: list[Event] = []
        self.approval_changes: list[ApprovalChange] = []
        # Run once the transaction has committed (metrics): a rollback records nothing.
        self.after_commit: list[Callable[[], None]] = []
        # The hash of each DecisionRecord body this transaction stored, by record id: the
        # event that writes or changes the record carries it (the body is hashed once).
        self._stored_records: dict[str, str] = {}
        # The instances this transaction locked or created (their next event's revision),
        # the fields each one's newest event sealed, and the actions written but whose event
        # is not appended yet: action id -> (that event's revision, the seal of what was
        # written).
        self._instances: dict[str, Instance] = {}
        self._sealed_instances: dict[str, Json] = {}
        self._unsealed: dict[str, tuple[int, str]] = {}
        # Instances read with their seal (and lock) that had no plan then.
        self._planless: set[str] = set()
        # Per instance locked in this unit: how many of its actions wait for a human, as
        # read with the lock and kept by the writes of this unit (waiting_actions).
        self._waiting: dict[str, int] = {}

    # -- instances ---------------------------------------------------------------------

    async def get_instance(self, instance_id: str, *, lock: bool = False) -> Instance | None:
        """With `lock` (to change it), the instance is checked against its newest event
        first: StateTampered if it no longer matches."""
        if not lock:
            row = (await self.connection.execute(_INSTANCE, {"instance_id": instance_id})).first()
            return INSTANCES.of(row) if row else None
        query = _INSTANCE_LOCKED if self.dialect == "postgresql" else _INSTANCE_SEALED
        return await self._checked_instance(query, instance_id)

    async def _checked_instance(
        self, query: Any, instance_id: str, values: dict[str, str] | None = None
    ) -> Instance | None:
        row = (await self.connection.execute(query, values or {"instance_id": instance_id})).first()
        if row is None:
            return None
        instance, problem = _sealed_instance(row)
        if problem and any(query is locking for locking in _LOCKING):
            # PostgreSQL: when a write commits while this statement waits for the lock, the
            # statement sees that write's instance row but not its event. Read both again,
            # now that the lock is held.
            again = {"instance_id": instance.instance_id}
            row = (await self.connection.execute(_INSTANCE_SEALED, again)).one()
            instance, problem = _sealed_instance(row)
        if problem:
            raise StateTampered("instance", instance.instance_id, instance.instance_id, problem)
        if not row.has_plans:
            self._planless.add(instance.instance_id)
        self._waiting[instance.instance_id] = row.waiting_actions
        self._instances[instance.instance_id] = instance
        return instance

    async def find_instance_by_request(self, tenant_id: str, request_id: str) -> Instance | None:
        query = select(instances).where(
            instances.c.tenant_id == tenant_id, instances.c.request_id == request_id
        )
        row = (await self.connection.execute(query)).first()
        return INSTANCES.of(row) if row else None

    async def insert_instance(self, instance: Instance) -> None:
        await self.connection.defer(_INSERT["instances"], INSTANCES.values(instance))
        self._instances[instance.instance_id] = instance

    async def save_instance(self, instance: Instance) -> None:
        """Writes what the instance's newest event (appended in this transaction) sealed."""
        # The fields, not their seal: equal dicts compare cheaply, hashing them again does not.
        assert self._sealed_instances.get(instance.instance_id) == instance_fields(instance), (
            "an instance changes only with an event, appended after the change"
        )
        values = INSTANCES.values(instance, without=_INSTANCE_FIXED)
        await self.connection.defer(
            _SAVE_INSTANCE, {"match_instance": instance.instance_id, **values}
        )

    async def list_instances(
        self, tenant_id: str, state: InstanceState | None, before_seq: int | None, limit: int
    ) -> list[tuple[int, Instance]]:
        query = select(instances).order_by(instances.c.seq.desc()).limit(limit)
        if tenant_id:
            query = query.where(instances.c.tenant_id == tenant_id)
        if state is not None:
            query = query.where(instances.c.state == state.value)
        if before_seq is not None:
            query = query.where(instances.c.seq < before_seq)
        rows = (await self.connection.execute(query)).all()
        return [(row.seq, INSTANCES.of(row)) for row in rows]

    # -- events --------------------------------------------------------------------------

    async def append_event(
        self,
        instance: Instance,
        type: EventType,
        now: datetime,
        *,
        action: Action | None = None,
        actor: str = "",
        reason: str = "",
        record: DecisionRecord | None = None,
        gate_id: str = "",
        controls: Json | None = None,
        plan_sha256: str = "",
    ) -> Event:
        """Appends the next revision, chained to the previous one (composed by
        domain.trail.next_event). The caller holds the instance lock and saves the instance
        (whose revision and chain head this advances) before the transaction commits.
        `record` is the DecisionRecord this event writes or changes, stored earlier in this
        transaction: the event carries its hash."""
        event, sealed = trail.next_event(
            instance,
            type,
            now,
            action=action,
            actor=actor,
            reason=reason,
            record_id=record.record_id if record else "",
            record_sha256=self._stored_records[record.record_id] if record else "",
            gate_id=gate_id,
            controls=controls,
            action_seal=self._action_seal(instance.revision + 1, action),
            trace_id=tracing.trace_id_of(
                action.traceparent if action else "", instance.traceparent
            ),
            plan_sha256=plan_sha256,
        )
        self._sealed_instances[instance.instance_id] = sealed
        await self.insert_event(event)
        kind = trail.approval_kind(event, action)
        if kind is not None and action is not None:
            cursor = await self._next_feed_cursor(event.tenant_id)
            await self.insert_approval_change(trail.approval_change(event, action, kind, cursor))
            if kind in trail.WAIT_ENDS and tracing.enabled():
                # Traced once committed: the span says the wait is over.
                wait = _human_wait(instance, action, event)
                self.after_commit.append(partial(tracing.end_human_wait, wait))
        return event

    async def insert_event(self, event: Event) -> None:
        await self.connection.defer(_INSERT["events"], EVENTS.values(event))
        self.events.append(event)

    def _action_seal(self, revision: int, action: Action | None) -> str:
        """The seal of what insert_action or save_action wrote for `action`, which named the
        event about to be appended (at `revision`) as the one that changed it."""
        if action is None:
            return ""
        written = self._unsealed.pop(action.action_id, None)
        assert written is not None and written[0] == revision, (
            "an event about an action follows the write of that action"
        )
        return written[1]

    def _seal_action(self, action: Action) -> tuple[int, str]:
        """The revision of the event that will follow this write of the action (its
        instance is locked in this transaction), and the seal of what is written."""
        instance = self._instances.get(action.instance_id)
        assert instance is not None, "an action is written under its instance's lock"
        action.event_revision = instance.revision + 1
        sealed = (action.event_revision, seal(action_fields(action)))
        self._unsealed[action.action_id] = sealed
        return sealed

    def _checked_action(self, row: Row) -> Action:
        """The action, if it matches the event that last changed it (StateTampered if not).
        An action this transaction wrote, whose event is not appended yet, was checked when
        it was read."""
        action = ACTIONS.of(row)
        if action.action_id in self._unsealed:
            return action
        link = _joined(
            row,
            action_id="sealer_action_id",
            action_state="sealer_state",
            action_seal="sealer_seal",
        )
        problem = action_problem(action_fields(action), link, bool(row.superseded))
        if problem:
            raise StateTampered("action", action.action_id, action.instance_id, problem)
        return action

    async def _next_feed_cursor(self, tenant_id: str) -> int:
        # The upsert locks the tenant's feed row until commit (see schema.approval_feeds).
        cursor: int = (
            await self.connection.execute(
                _NEXT_FEED_CURSOR, {"t": tenant_id}, touches=frozenset({"approval_feeds"})
            )
        ).scalar_one()
        return cursor

    async def insert_approval_change(self, change: ApprovalChange) -> None:
        await self.connection.defer(_INSERT["approval_changes"], APPROVAL_CHANGES.values(change))
        self.approval_changes.append(change)

    async def list_approval_changes(
        self, tenant_id: str, after_cursor: int, limit: int
    ) -> list[ApprovalChange]:
        query = (
            select(approval_changes)
            .where(
                approval_changes.c.tenant_id == tenant_id,
                approval_changes.c.cursor > after_cursor,
            )
            .order_by(approval_changes.c.cursor)
            .limit(limit)
        )
        return [APPROVAL_CHANGES.of(row) for row in (await self.connection.execute(query)).all()]

    async def list_events(self, instance_id: str, after_revision: int, limit: int) -> list[Event]:
        values = {"instance_id": instance_id, "after_revision": after_revision, "limit": limit}
        return [EVENTS.of(row) for row in (await self.connection.execute(_EVENTS_AFTER, values))]

    # -- actions ---------------------------------------------------------------------------

    # Every read of actions checks them against their chain (StateTampered), but actions_of.

    async def get_action(self, action_id: str) -> Action | None:
        row = (await self.connection.execute(_ACTION, {"action_id": action_id})).first()
        return self._checked_action(row) if row else None

    async def find_action(self, instance_id: str, tool_call_id: str) -> Action | None:
        values = {"instance_id": instance_id, "tool_call_id": tool_call_id}
        row = (await self.connection.execute(_ACTION_BY_CALL, values)).first()
        return self._checked_action(row) if row else None

    async def locked_action(self, action_id: str) -> tuple[Action, Instance] | None:
        """The action and its instance, the instance locked first and the action read
        after (see the lock order above): a decision that committed before the lock was
        granted is seen. None if there is no such action."""
        query = (
            _INSTANCE_OF_ACTION_LOCKED
            if self.dialect == "postgresql"
            else _INSTANCE_OF_ACTION_SEALED
        )
        instance = await self._checked_instance(query, "", {"action_id": action_id})
        if instance is None:
            return None
        action = await self.get_action(action_id)
        assert action is not None, "actions are never deleted"
        return action, instance

    async def actions_of(self, instance_id: str) -> list[Action]:
        """Every action of an instance as stored, unchecked: for verifying the chain."""
        query = select(actions).where(actions.c.instance_id == instance_id).order_by(actions.c.seq)
        return [ACTIONS.of(row) for row in (await self.connection.execute(query)).all()]

    async def actions_in_states(self, instance_id: str, states: set[ActionState]) -> list[Action]:
        query = _ACTIONS_SEALED.where(
            actions.c.instance_id == instance_id,
            actions.c.state.in_([s.value for s in states]),
        ).order_by(actions.c.seq)
        return [self._checked_action(row) for row in (await self.connection.execute(query)).all()]

    async def insert_action(self, action: Action) -> None:
        """Stores a new action; the next event appended (ACTION_REQUESTED) seals it."""
        self._seal_action(action)
        self._count_waiting(action, None)
        await self.connection.defer(_INSERT["actions"], ACTIONS.values(action))

    def _count_waiting(self, action: Action, was: ActionState | None) -> None:
        if action.instance_id in self._waiting:
            waits = ActionState.WAITING_FOR_HUMAN
            self._waiting[action.instance_id] += (action.state is waits) - (was is waits)

    async def waiting_actions(self, instance_id: str) -> int:
        """How many of the instance's actions wait for a human, this unit's writes included."""
        if instance_id not in self._waiting:
            waiting = {ActionState.WAITING_FOR_HUMAN}
            return len(await self.actions_in_states(instance_id, waiting))
        return self._waiting[instance_id]

    async def save_action(self, action: Action, *, expected_state: ActionState) -> None:
        """Writes the action's mutable fields if it is still in expected_state; otherwise
        another transaction changed it first and ConcurrentChange is raised. The next event
        appended must be about this action: it seals what was written."""
        self._seal_action(action)
        self._count_waiting(action, expected_state)
        values = ACTIONS.values(action, without=_ACTION_FIXED)
        await self.connection.defer(
            _SAVE_ACTION,
            {"match_action": action.action_id, "match_state": expected_state.value, **values},
            partial(_one_row, action.action_id),
        )

    async def save_grant(self, action: Action) -> None:
        """Writes a fresh grant of an approved action, with no event: the grant's token
        hash is not sealed, and its expiry was set (and sealed) when it was approved."""
        values = dict(
            match_action=action.action_id,
            match_state=action.state.value,
            grant_sha256=action.grant_sha256,
            grant_expires=action.grant_expires,
        )
        await self.connection.defer(_SAVE_GRANT, values, partial(_one_row, action.action_id))

    async def list_waiting_actions(
        self, tenant_id: str, after_seq: int | None, limit: int, not_party: str = ""
    ) -> list[tuple[int, tuple[Action, frozenset[str]]]]:
        """(seq, (action, its instance's parties)) of waiting actions, oldest first; with
        `not_party`, only those of instances it is not a party of (domain.gates.PARTY_PATHS)."""
        party_columns = [_party_column(path) for path in PARTY_PATHS]
        query = (
            _ACTIONS_SEALED.add_columns(
                *(column.label(f"party_{i}") for i, column in enumerate(party_columns))
            )
            .join(instances, instances.c.instance_id == actions.c.instance_id)
            .where(actions.c.state == ActionState.WAITING_FOR_HUMAN.value)
            .order_by(actions.c.seq)
            .limit(limit)
        )
        if tenant_id:
            query = query.where(actions.c.tenant_id == tenant_id)
        if after_seq is not None:
            query = query.where(actions.c.seq > after_seq)
        if not_party:
            # A party that is absent (NULL) or empty is nobody, as in parties_of.
            query = query.where(
                *(func.coalesce(column, "") != not_party for column in party_columns)
            )
        rows = (await self.connection.execute(query)).all()
        return [
            (
                row.seq,
                (
                    self._checked_action(row),
                    frozenset(
                        who
                        for i in range(len(party_columns))
                        if (who := getattr(row, f"party_{i}"))
                    ),
                ),
            )
            for row in rows
        ]

    async def due_actions(self, now: datetime, limit: int) -> list[tuple[str, str]]:
        """(instance_id, action_id) of waiting actions whose deadline or reminder is due."""
        query = (
            select(actions.c.instance_id, actions.c.action_id)
            .where(
                actions.c.state == ActionState.WAITING_FOR_HUMAN.value,
                actions.c.next_due <= now,
            )
            .order_by(actions.c.next_due)
            .limit(limit)
        )
        return [(row.instance_id, row.action_id) for row in await self.connection.execute(query)]

    async def waiting_by_gate(self) -> dict[str, int]:
        """How many waiting actions each gate holds: an action counts on every gate that
        still waits. Reads only the waiting rows, through a partial index on them."""
        rows = await self.connection.execute(text(_WAITING_BY_GATE[self.dialect]))
        return {row.gate_id: row.waiting for row in rows}

    async def try_lock_instance(self, instance_id: str) -> Instance | None:
        """The instance, locked; None if another server holds it now (PostgreSQL skips it:
        that server is firing its timers). SQLite has one writer, so it never skips."""
        query = _INSTANCE_TRY_LOCK if self.dialect == "postgresql" else _INSTANCE_SEALED
        return await self._checked_instance(query, instance_id)

    # -- votes -------------------------------------------------------------------------------

    async def insert_vote(self, vote: Vote) -> None:
        await self.connection.defer(_INSERT["votes"], VOTES.values(vote))

    async def votes_for(self, action_id: str) -> list[Vote]:
        return [
            VOTES.of(row) for row in await self.connection.execute(_VOTES, {"action_id": action_id})
        ]

    async def votes_and_request(
        self, action_id: str, tenant_id: str, request_id: str
    ) -> tuple[list[Vote], Vote | None]:
        """votes_for(action_id) and find_vote_by_request(tenant_id, request_id), in one read."""
        values = {"action_id": action_id, "tenant_id": tenant_id, "request_id": request_id}
        found = [VOTES.of(row) for row in await self.connection.execute(_VOTES_AND_REQUEST, values)]
        by_request = [v for v in found if v.tenant_id == tenant_id and v.request_id == request_id]
        return [v for v in found if v.action_id == action_id], (
            by_request[0] if by_request else None
        )

    async def find_vote_by_request(self, tenant_id: str, request_id: str) -> Vote | None:
        values = {"tenant_id": tenant_id, "request_id": request_id}
        row = (await self.connection.execute(_VOTE_BY_REQUEST, values)).first()
        return VOTES.of(row) if row else None

    # -- decision records -------------------------------------------------------------------

    async def insert_record(self, record: DecisionRecord) -> None:
        await self.connection.defer(
            _INSERT["decision_records"],
            dict(
                record_id=record.record_id,
                tenant_id=record.tenant_id,
                instance_id=record.instance_id,
                # NULL for a checkpoint's record: the column is unique among actions.
                action_id=record.action_id or None,
                create_time=record.create_time,
                body=self._stored_body(record),
            ),
        )

    async def attach_execution(self, record: DecisionRecord) -> None:
        await self.connection.execute(
            update(decision_records)
            .where(decision_records.c.record_id == record.record_id)
            .values(body=self._stored_body(record))
        )

    def _stored_body(self, record: DecisionRecord) -> Json:
        body = _record_body(record)
        self._stored_records[record.record_id] = record_hash(body)
        return body

    async def get_record(self, record_id: str) -> DecisionRecord | None:
        body = (await self.connection.execute(_RECORD, {"record_id": record_id})).scalar()
        return _record(body) if body is not None else None

    async def get_record_for_action(self, action_id: str) -> DecisionRecord | None:
        """The action's record; StateTampered if it is not what its chain says (a record
        this transaction stored is not in the chain yet, and is taken as stored)."""
        values = {"action_id": action_id}
        row = (await self.connection.execute(_RECORD_FOR_ACTION, values)).first()
        if row is None:
            return None
        stored = self._stored_records.get(row.record_id)
        if (stored or row.sealed) != record_hash(row.body):
            problem = f"record {row.record_id} does not match the hash its chain carries"
            raise StateTampered("record", row.record_id, row.instance_id, problem)
        return _record(row.body)

    async def checkpoint_record(self, instance_id: str, decision_key: str) -> DecisionRecord | None:
        """The instance's record of the decision checkpoint `decision_key`, if written."""
        query = select(decision_records.c.body).where(
            decision_records.c.instance_id == instance_id,
            decision_records.c.action_id.is_(None),
        )
        for body in (await self.connection.execute(query)).scalars():
            if body.get("decision_key") == decision_key:
                return _record(body)
        return None

    # -- plans ---------------------------------------------------------------------------

    async def insert_plan(self, plan: SubmittedPlan) -> None:
        self._planless.discard(plan.instance_id)
        await self.connection.execute(_INSERT_PLAN, PLANS.values(plan))

    async def get_plan(self, instance_id: str, plan_id: str) -> SubmittedPlan | None:
        values = {"instance_id": instance_id, "plan_id": plan_id}
        row = (await self.connection.execute(_PLAN, values)).first()
        return PLANS.of(row) if row else None

    async def plans_of(self, instance_id: str) -> list[SubmittedPlan]:
        """The instance's submitted plans, in the order they were submitted."""
        if instance_id in self._planless:
            return []  # it had none when it was locked, and plans are added under the lock
        rows = await self.connection.execute(_PLANS_OF, {"instance_id": instance_id})
        return [PLANS.of(row) for row in rows]

    async def save_plan(self, plan: SubmittedPlan) -> None:
        """Writes the plan's steps again (an approver narrowed a gated step's params)."""
        await self.connection.execute(
            _SAVE_PLAN,
            {"match_instance": plan.instance_id, "match_plan": plan.plan_id, "new_plan": plan.plan},
        )

    async def insert_step_use(self, use: StepUse) -> None:
        """KeyConflict (at commit, or here) when the step was used already."""
        await self.connection.defer(_INSERT_STEP_USE, STEP_USES.values(use))

    async def step_uses(self, instance_id: str) -> list[StepUse]:
        rows = await self.connection.execute(_STEP_USES, {"instance_id": instance_id})
        return [STEP_USES.of(row) for row in rows]

    async def record_bodies(self, instance_id: str) -> dict[str, Json]:
        """Every record of an instance as stored, for verifying the chain."""
        query = select(decision_records.c.record_id, decision_records.c.body).where(
            decision_records.c.instance_id == instance_id
        )
        rows = (await self.connection.execute(query)).all()
        return {row.record_id: row.body for row in rows}

    async def instances_for_export(
        self,
        tenant_id: str,
        instance_id: str,
        since: datetime | None,
        until: datetime | None,
        after_seq: int,
        limit: int,
    ) -> list[tuple[int, Instance]]:
        query = (
            select(instances)
            .where(instances.c.seq > after_seq)
            .order_by(instances.c.seq)
            .limit(limit)
        )
        if tenant_id:
            query = query.where(instances.c.tenant_id == tenant_id)
        if instance_id:
            query = query.where(instances.c.instance_id == instance_id)
        if since is not None:
            query = query.where(instances.c.create_time >= since)
        if until is not None:
            query = query.where(instances.c.create_time < until)
        rows = (await self.connection.execute(query)).all()
        return [(row.seq, INSTANCES.of(row)) for row in rows]

    async def list_records(
        self, tenant_id: str, instance_id: str, before_seq: int | None, limit: int
    ) -> list[tuple[int, DecisionRecord]]:
        query = (
            select(decision_records.c.seq, decision_records.c.body)
            .order_by(decision_records.c.seq.desc())
            .limit(limit)
        )
        if tenant_id:
            query = query.where(decision_records.c.tenant_id == tenant_id)
        if instance_id:
            query = query.where(decision_records.c.instance_id == instance_id)
        if before_seq is not None:
            query = query.where(decision_records.c.seq < before_seq)
        rows = (await self.connection.execute(query)).all()
        return [(row.seq, _record(row.body)) for row in rows]


# -- rows to models ------------------------------------------------------------------------


def _party_column(path: tuple[str, ...]) -> Any:
    """The column (or the value inside a JSON column) of `instances` at a PARTY_PATHS path."""
    column = instances.c[path[0]]
    return column[path[1:]].as_string() if len(path) > 1 else column


def _joined(row: Row, **labels: str) -> Json | None:
    """The joined event's columns of `row` (labelled as given) under their names in an event
    body; None when there was no such event (the first column is never NULL in an event)."""
    found = {key: getattr(row, label) for key, label in labels.items()}
    return found if next(iter(found.values())) is not None else None


def _sealed_instance(row: Row) -> tuple[Instance, str]:
    """The instance of a row of _INSTANCE_SEALED, and why it disagrees with its chain."""
    instance = INSTANCES.of(row)
    head = _joined(row, hash="head_hash", instance_state="head_state", instance_seal="head_seal")
    problem = instance_problem(
        instance_fields(instance),
        instance.revision,
        instance.chain_head,
        head,
        bool(row.beyond),
    )
    return instance, problem


def _one_row(action_id: str, rowcount: int) -> None:
    """The check of a save of an action: another transaction changed it first if not."""
    if rowcount != 1:
        raise ConcurrentChange(action_id)


def _human_wait(instance: Instance, action: Action, event: Event) -> tracing.HumanWait:
    return tracing.HumanWait(
        traceparent=action.traceparent or instance.traceparent,
        start=action.create_time,
        end=event.time,
        attributes={
            "signoff.tenant.id": action.tenant_id,
            "signoff.instance.id": action.instance_id,
            "signoff.action.id": action.action_id,
            "signoff.action.tool": action.proposal.tool,
            "signoff.action.gate_ids": list(action.gate_ids),
            "signoff.decision.outcome": action.state.value,
            "signoff.decision.decided_by": action.decided_by or event.actor,
        },
    )


def _next_due(action: Action) -> datetime | None:
    times = [g.deadline for g in action.waiting_gates()]
    times += [g.next_reminder for g in action.waiting_gates() if g.next_reminder]
    return min(times) if times else None


# Rows to models and back (store/mapping.py). What no write after the insert changes is
# left out of the saves; any other column, a new one included, is written with its model.
INSTANCES = Mapper(Instance, instances)
ACTIONS = Mapper(
    Action,
    actions,
    convert={
        "gates": (
            lambda gates: [g.as_json() for g in gates],
            lambda body: [GateStatus.from_json(g) for g in body],
        )
    },
    derived={"next_due": _next_due},
)
EVENTS = Mapper(Event, events)
VOTES = Mapper(Vote, votes)
APPROVAL_CHANGES = Mapper(ApprovalChange, approval_changes)
PLANS = Mapper(SubmittedPlan, plans)
STEP_USES = Mapper(StepUse, plan_step_uses, database_only=())

_INSTANCE_FIXED = frozenset(
    {
        "instance_id",
        "tenant_id",
        "request_id",
        "envelope",
        "envelope_sha256",
        "create_time",
        "created_by",
        "traceparent",
    }
)
_ACTION_FIXED = frozenset(
    {
        "action_id",
        "instance_id",
        "tenant_id",
        "tool_call_id",
        "tool",
        "risk_class",
        "evidence_refs",
        "create_time",
        "proposed_sha256",
        "traceparent",
        "estimated_cost_cents",
    }
)


def _record_body(record: DecisionRecord) -> Json:
    body = asdict(record)
    for key in ("create_time",):
        body[key] = record.create_time.isoformat()
    body["approvals"] = [
        {**asdict(a), "verdict": a.verdict.value, "time": a.time.isoformat()}
        for a in record.approvals
    ]
    body["status"] = record.status.value
    body["outcome"] = record.outcome.value if record.outcome else None
    body["execution_state"] = record.execution_state.value if record.execution_state else None
    return body


def _record(body: Json) -> DecisionRecord:
    fields = dict(body)
    fields["create_time"] = datetime.fromisoformat(body["create_time"])
    fields["status"] = DecisionStatus(body["status"])
    fields["outcome"] = Outcome(body["outcome"]) if body.get("outcome") else None
    fields["execution_state"] = (
        ActionState(body["execution_state"]) if body.get("execution_state") else None
    )
    fields["approvals"] = [
        Approval(
            **{
                **a,
                "verdict": Verdict(a["verdict"]),
                "time": datetime.fromisoformat(a["time"]),
            }
        )
        for a in body["approvals"]
    ]
    return DecisionRecord(**fields)
