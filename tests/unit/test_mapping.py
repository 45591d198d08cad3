"""Rows ↔ models: every column of a mapped table has its field, and a model survives the
trip to a row and back."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table

from signoff.domain.models import (
    Action,
    ApprovalChange,
    Event,
    GateStatus,
    Instance,
    ProposedAction,
    Vote,
)
from signoff.domain.states import (
    ActionState,
    ApprovalChangeKind,
    EventType,
    GateState,
    InstanceState,
    Outcome,
    RiskClass,
    Verdict,
)
from signoff.store import repository
from signoff.store.mapping import Mapper

NOW = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)


def trip(mapper: Mapper, model: object) -> object:  # type: ignore[type-arg]
    return mapper.of(SimpleNamespace(**mapper.values(model)))  # type: ignore[arg-type]


def test_models_survive_a_row() -> None:
    instance = Instance(
        "ins_1", "t", "req", {"user": {"user_id": "u"}}, "sha", InstanceState.RUNNING, 3, 1,
        NOW, NOW, created_by="agt", chain_head="h", cost_spent_cents=1.5,
    )  # fmt: skip
    gate = GateStatus("G", GateState.WAITING, 2, 1, NOW, NOW + timedelta(hours=1))
    action = Action(
        "act_1", "ins_1", "t",
        ProposedAction("tc", "tool", {"a": 1}, RiskClass.NETWORK, ("ev",), 2.0),
        "sha", ActionState.WAITING_FOR_HUMAN, ["G"], "", "why", NOW, None,
        policy={"rule_ids": ["R"]}, gates=[gate], cost_cents=None,
    )  # fmt: skip
    event = Event(
        "ins_1", "t", 4, EventType.ACTION_DECIDED, NOW, InstanceState.RUNNING, "act_1",
        ActionState.APPROVED, Outcome.APPROVED, "me", "ok", budget={"tool_calls_used": 1},
    )  # fmt: skip
    vote = Vote("act_1", "t", "me", Verdict.APPROVE, "ok", "r", "sha", NOW, ("G",))
    change = ApprovalChange(
        "t", 7, ApprovalChangeKind.VOTED, "act_1", "ins_1", 4, ActionState.WAITING_FOR_HUMAN,
        "tool", "G", "me", NOW,
    )  # fmt: skip
    assert trip(repository.INSTANCES, instance) == instance
    assert trip(repository.EVENTS, event) == event
    assert trip(repository.VOTES, vote) == vote
    assert trip(repository.APPROVAL_CHANGES, change) == change
    row = repository.ACTIONS.values(action)
    assert row["state"] == "WAITING_FOR_HUMAN" and row["evidence_refs"] == ["ev"]
    assert row["next_due"] == gate.deadline  # derived, for the timers
    assert row["gates"] == [gate.as_json()]
    assert repository.ACTIONS.of(SimpleNamespace(**row)) == action  # type: ignore[arg-type]


@dataclass
class Thing:
    thing_id: str
    kind: RiskClass


def test_a_column_without_a_field_or_a_field_without_a_column_fails() -> None:
    def table(*names: str) -> Table:
        return Table(
            "things", MetaData(), Column("seq", Integer), *(Column(n, String) for n in names)
        )

    assert Mapper(Thing, table("thing_id", "kind")).values(Thing("a", RiskClass.NETWORK)) == {
        "thing_id": "a",
        "kind": "NETWORK",
    }
    with pytest.raises(AssertionError, match=r"columns \['new'\] map to no field"):
        Mapper(Thing, table("thing_id", "kind", "new"))
    with pytest.raises(AssertionError, match=r"no column for Thing\.kind"):
        Mapper(Thing, table("thing_id"))
