"""The pure domain: transition table, outcomes, canonical hashing, ids. No I/O."""

import itertools
import time

import pytest

from signoff.domain.canonical import canonical_json, sha256_of
from signoff.domain.errors import IllegalTransition
from signoff.domain.ids import new_id
from signoff.domain.models import ProposedAction
from signoff.domain.states import (
    ACTION_TRANSITIONS,
    GATE_TRANSITIONS,
    INSTANCE_TRANSITIONS,
    SETTLEMENTS,
    ActionState,
    GateState,
    InstanceState,
    Outcome,
    RiskClass,
    outcome_of,
    transition_action,
    transition_gate,
    transition_instance,
)

# The documented lifecycle (docs/states.md), written out independently of the table.
ALLOWED_INSTANCE = {
    ("RUNNING", "WAITING_FOR_HUMAN"),
    ("RUNNING", "COMPLETED"),
    ("RUNNING", "TERMINATED"),
    ("WAITING_FOR_HUMAN", "RUNNING"),
    ("WAITING_FOR_HUMAN", "TERMINATED"),
}
ALLOWED_ACTION = {
    ("NEW", "WAITING_FOR_HUMAN"),
    ("NEW", "APPROVED"),
    ("NEW", "REJECTED"),
    ("WAITING_FOR_HUMAN", "WAITING_FOR_HUMAN"),
    ("WAITING_FOR_HUMAN", "APPROVED"),
    ("WAITING_FOR_HUMAN", "REJECTED"),
    ("WAITING_FOR_HUMAN", "EXPIRED"),
    ("WAITING_FOR_HUMAN", "CANCELLED"),
    ("APPROVED", "EXECUTING"),
    ("APPROVED", "EXECUTED"),
    ("APPROVED", "FAILED"),
    ("APPROVED", "CANCELLED"),
    ("EXECUTING", "EXECUTED"),
    ("EXECUTING", "FAILED"),
}

ALLOWED_GATE = {
    ("WAITING", "SATISFIED"),
    ("WAITING", "REJECTED"),
    ("WAITING", "EXPIRED"),
    ("WAITING", "ESCALATED"),
    ("WAITING", "CLOSED"),
}


@pytest.mark.parametrize("current,target", list(itertools.product(InstanceState, InstanceState)))
def test_every_instance_transition(current: InstanceState, target: InstanceState) -> None:
    if (current.value, target.value) in ALLOWED_INSTANCE:
        assert transition_instance(current, target) is target
    else:
        with pytest.raises(IllegalTransition) as raised:
            transition_instance(current, target)
        assert raised.value.reason == "ILLEGAL_TRANSITION"
        assert raised.value.metadata == {"entity": "instance", "from": current, "to": target}


@pytest.mark.parametrize("current,target", list(itertools.product(ActionState, ActionState)))
def test_every_action_transition(current: ActionState, target: ActionState) -> None:
    if (current.value, target.value) in ALLOWED_ACTION:
        assert transition_action(current, target) is target
    else:
        with pytest.raises(IllegalTransition):
            transition_action(current, target)


@pytest.mark.parametrize("current,target", list(itertools.product(GateState, GateState)))
def test_every_gate_transition(current: GateState, target: GateState) -> None:
    if (current.value, target.value) in ALLOWED_GATE:
        assert transition_gate(current, target) is target
    else:
        with pytest.raises(IllegalTransition) as raised:
            transition_gate(current, target)
        assert raised.value.metadata == {"entity": "gate", "from": current, "to": target}


def test_tables_cover_every_state() -> None:
    assert set(INSTANCE_TRANSITIONS) == set(InstanceState)
    assert set(ACTION_TRANSITIONS) == set(ActionState)
    assert set(GATE_TRANSITIONS) == set(GateState)


def test_every_settlement_leaves_waiting_by_the_action_table() -> None:
    for target in SETTLEMENTS:
        assert target in ACTION_TRANSITIONS[ActionState.WAITING_FOR_HUMAN]
    # Only a cancel decides nothing (it revokes; the decider stays what it was).
    assert [t for t, how in SETTLEMENTS.items() if not how.decides] == [ActionState.CANCELLED]


def test_terminal_states_have_no_way_out() -> None:
    for state in (InstanceState.COMPLETED, InstanceState.TERMINATED):
        assert not INSTANCE_TRANSITIONS[state]
    for action_state in ("REJECTED", "EXPIRED", "CANCELLED", "EXECUTED", "FAILED"):
        assert not ACTION_TRANSITIONS[ActionState(action_state)]


@pytest.mark.parametrize(
    "state,outcome",
    [
        ("WAITING_FOR_HUMAN", "WAITING_FOR_HUMAN"),
        ("APPROVED", "APPROVED"),
        ("EXECUTING", "APPROVED"),
        ("EXECUTED", "APPROVED"),
        ("FAILED", "APPROVED"),
        ("REJECTED", "REJECTED"),
        ("EXPIRED", "REJECTED"),
        ("CANCELLED", "TERMINATED"),
    ],
)
def test_what_the_agent_is_told(state: str, outcome: str) -> None:
    assert outcome_of(ActionState(state)) is Outcome(outcome)


def test_an_unstored_action_has_no_outcome() -> None:
    with pytest.raises(ValueError):
        outcome_of(ActionState.NEW)


def test_canonical_json_is_rfc8785() -> None:
    # Keys sorted, no whitespace, numbers in their shortest form.
    assert (
        canonical_json({"b": 1.0, "a": [True, None, "é"]}) == '{"a":[true,null,"é"],"b":1}'.encode()
    )


def test_action_hash_ignores_key_order_and_covers_what_runs() -> None:
    one = ProposedAction("tc_1", "adp.pay", {"a": 1, "b": 2}, RiskClass.DESTRUCTIVE, ("ev",))
    same = ProposedAction("tc_2", "adp.pay", {"b": 2, "a": 1}, RiskClass.DESTRUCTIVE, ("ev",))
    assert one.sha256() == same.sha256()  # the tool call id names the call; it is not what runs
    assert one.sha256().startswith("sha256:") and len(one.sha256()) == 71
    for changed in (
        ProposedAction("tc_1", "adp.pay", {"a": 1, "b": 3}, RiskClass.DESTRUCTIVE, ("ev",)),
        ProposedAction("tc_1", "adp.refund", {"a": 1, "b": 2}, RiskClass.DESTRUCTIVE, ("ev",)),
        ProposedAction("tc_1", "adp.pay", {"a": 1, "b": 2}, RiskClass.NETWORK, ("ev",)),
        ProposedAction("tc_1", "adp.pay", {"a": 1, "b": 2}, RiskClass.DESTRUCTIVE, ()),
    ):
        assert changed.sha256() != one.sha256()


def test_sha256_of_is_stable() -> None:
    assert (
        sha256_of({}) == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )


def test_ids_are_prefixed_unique_and_time_ordered() -> None:
    ids = [new_id("act") for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(i.startswith("act_") and len(i) == 30 for i in ids)
    first = new_id("x")
    time.sleep(0.002)
    assert new_id("x")[:12] > first[:12]  # the leading characters are the millisecond clock
