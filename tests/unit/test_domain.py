"""The pure domain: transition table, outcomes, canonical hashing, ids. No I/O."""

import itertools
import random
import time
from contextlib import nullcontext

import pytest
import rfc8785

from signoff.domain.canonical import canonical_json, sha256_of
from signoff.domain.errors import IllegalTransition
from signoff.domain.ids import new_id
from signoff.domain.models import Action, GateStatus, Instance, ProposedAction
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


def _random_json(rng: random.Random, depth: int = 0) -> object:
    """A JSON value with what canonical form is particular about: key order by UTF-16 code
    units (U+E000..U+FFFF against characters beyond U+FFFF), escapes, integers at the edge
    of doubles, floats."""
    alphabet = ["a", "B", "é", "\n", "\x01", "\x7f", '"', "\\", "\u2028", "\ue000", "\U0001f600"]
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))
    leaves = [
        text,
        None,
        True,
        False,
        rng.randint(-10, 10),
        2**53 - 1,
        -(2**53 - 1),
        2**53,
        0.1,
        1.0,
        1e21,
    ]
    if depth > 3 or rng.random() < 0.4:
        return rng.choice(leaves)
    if rng.random() < 0.5:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3))): _random_json(
            rng, depth + 1
        )
        for _ in range(rng.randint(0, 4))
    }


def test_canonical_json_takes_the_fast_path_only_where_it_is_rfc8785() -> None:
    rng = random.Random(8785)
    for _ in range(5_000):
        value = _random_json(rng)
        try:
            expected: bytes | type[Exception] = rfc8785.dumps(value)
        except rfc8785.CanonicalizationError as error:  # an integer a double cannot hold
            expected = type(error)
        with pytest.raises(expected) if isinstance(expected, type) else nullcontext():
            assert canonical_json(value) == expected, value


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


def _waiting_action(*gates: str) -> tuple[Action, Instance]:
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 5, 4, tzinfo=UTC)
    instance = Instance(
        "ins", "t", "req", {}, "sha", InstanceState.WAITING_FOR_HUMAN, 1, 1, now, now
    )
    deadline = now + timedelta(hours=1)
    action = Action(
        "act", "ins", "t", ProposedAction("tc", "tool", {}, RiskClass.NETWORK, (), 5.0), "sha",
        ActionState.WAITING_FOR_HUMAN, list(gates), "", "", now, None,
        gates=[GateStatus(g, GateState.WAITING, 2, 1, now, deadline) for g in gates],
    )  # fmt: skip
    instance.cost_reserved_cents = 5.0
    return action, instance


def test_settling_expires_the_gate_that_timed_out_and_closes_the_others() -> None:
    action, instance = _waiting_action("A", "B")
    now = action.create_time
    previous = action.settle(
        instance, ActionState.EXPIRED, now, decided_by="timer", reason="late", timed_out="A"
    )
    assert previous is ActionState.WAITING_FOR_HUMAN
    assert [g.state for g in action.gates] == [GateState.EXPIRED, GateState.CLOSED]
    assert (action.decided_by, action.decision_reason, action.decide_time) == ("timer", "late", now)
    assert instance.cost_reserved_cents == 0.0  # the reservation is released with the wait
    with pytest.raises(IllegalTransition):  # settled once
        action.settle(instance, ActionState.APPROVED, now, decided_by="x", reason="")


def test_a_cancel_keeps_the_decider_and_a_vote_moves_only_waiting_gates() -> None:
    from datetime import timedelta

    from signoff.domain.gates import count_vote, settled_state
    from signoff.domain.states import Verdict

    action, instance = _waiting_action("A", "B")
    count_vote(action.gates, Verdict.APPROVE)
    count_vote(action.gates, Verdict.APPROVE)  # quorum 2
    assert settled_state(action) is ActionState.APPROVED
    now = action.create_time
    action.settle(
        instance, ActionState.APPROVED, now, decided_by="lead", reason="ok",
        grant_ttl=timedelta(minutes=15),
    )  # fmt: skip
    assert action.grant_expires == now + timedelta(minutes=15)
    count_vote(action.gates, Verdict.REJECT)  # satisfied gates are not moved again
    assert {g.state for g in action.gates} == {GateState.SATISFIED}
    action.settle(instance, ActionState.CANCELLED, now, decided_by=None, reason="stop")
    assert action.decided_by == "lead" and action.decision_reason == "ok"
