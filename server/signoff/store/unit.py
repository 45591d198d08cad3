"""The repository a use case works against: the reads and writes of one unit of work (one
transaction, committed as a whole). store/repository.Tx implements it on SQLAlchemy; another
execution layer (a writer thread on sqlite3, psycopg directly) can implement it instead, and
no use case changes. Use cases type their transaction as Repository, never as Tx."""

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from signoff.domain.models import (
    Action,
    ApprovalChange,
    DecisionRecord,
    Event,
    Instance,
    Json,
    Vote,
)
from signoff.domain.plans import StepUse, SubmittedPlan
from signoff.domain.states import ActionState, EventType, InstanceState


class Repository(Protocol):
    # Run once the unit of work has committed (metrics, traces): a rollback runs none.
    after_commit: list[Callable[[], None]]

    async def get_instance(self, instance_id: str, *, lock: bool = False) -> Instance | None: ...

    async def find_instance_by_request(
        self, tenant_id: str, request_id: str
    ) -> Instance | None: ...

    async def insert_instance(self, instance: Instance) -> None: ...

    async def save_instance(self, instance: Instance) -> None: ...

    async def list_instances(
        self, tenant_id: str, state: InstanceState | None, before_seq: int | None, limit: int
    ) -> list[tuple[int, Instance]]: ...

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
    ) -> Event: ...

    async def list_approval_changes(
        self, tenant_id: str, after_cursor: int, limit: int
    ) -> list[ApprovalChange]: ...

    async def list_events(
        self, instance_id: str, after_revision: int, limit: int
    ) -> list[Event]: ...

    async def get_action(self, action_id: str) -> Action | None: ...

    async def find_action(self, instance_id: str, tool_call_id: str) -> Action | None: ...

    async def locked_action(self, action_id: str) -> tuple[Action, Instance] | None: ...

    async def actions_of(self, instance_id: str) -> list[Action]: ...

    async def actions_in_states(
        self, instance_id: str, states: set[ActionState]
    ) -> list[Action]: ...

    async def waiting_actions(self, instance_id: str) -> int: ...

    async def insert_action(self, action: Action) -> None: ...

    async def save_action(self, action: Action, *, expected_state: ActionState) -> None: ...

    async def save_grant(self, action: Action) -> None: ...

    async def list_waiting_actions(
        self, tenant_id: str, after_seq: int | None, limit: int, not_party: str = ""
    ) -> list[tuple[int, tuple[Action, frozenset[str]]]]: ...

    async def due_actions(self, now: datetime, limit: int) -> list[tuple[str, str]]: ...

    async def waiting_by_gate(self) -> dict[str, int]: ...

    async def try_lock_instance(self, instance_id: str) -> Instance | None: ...

    async def insert_vote(self, vote: Vote) -> None: ...

    async def votes_for(self, action_id: str) -> list[Vote]: ...

    async def find_vote_by_request(self, tenant_id: str, request_id: str) -> Vote | None: ...

    async def votes_and_request(
        self, action_id: str, tenant_id: str, request_id: str
    ) -> tuple[list[Vote], Vote | None]: ...

    async def insert_record(self, record: DecisionRecord) -> None: ...

    async def attach_execution(self, record: DecisionRecord) -> None: ...

    async def get_record(self, record_id: str) -> DecisionRecord | None: ...

    async def get_record_for_action(self, action_id: str) -> DecisionRecord | None: ...

    async def record_bodies(self, instance_id: str) -> dict[str, Json]: ...

    async def instances_for_export(
        self,
        tenant_id: str,
        instance_id: str,
        since: datetime | None,
        until: datetime | None,
        after_seq: int,
        limit: int,
    ) -> list[tuple[int, Instance]]: ...

    async def list_records(
        self, tenant_id: str, instance_id: str, before_seq: int | None, limit: int
    ) -> list[tuple[int, DecisionRecord]]: ...

    async def insert_plan(self, plan: SubmittedPlan) -> None: ...

    async def get_plan(self, instance_id: str, plan_id: str) -> SubmittedPlan | None: ...

    async def plans_of(self, instance_id: str) -> list[SubmittedPlan]: ...

    async def save_plan(self, plan: SubmittedPlan) -> None: ...

    async def insert_step_use(self, use: StepUse) -> None: ...

    async def step_uses(self, instance_id: str) -> list[StepUse]: ...
