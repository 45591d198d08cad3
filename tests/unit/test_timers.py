"""Gate timeouts, escalation and reminders with an injected clock (no sleeps), on real
databases; and timers firing exactly once when several processes race on PostgreSQL."""

import asyncio
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signoff.domain.errors import PermissionDenied
from signoff.domain.models import Principal, PrincipalKind, ProposedAction
from signoff.domain.states import (
    ActionState,
    DecisionStatus,
    EventType,
    InstanceState,
    RiskClass,
    Verdict,
)
from signoff.policy.engine import RegoPolicy
from signoff.services import audit, decisions, instances, timers
from signoff.services.context import Context
from signoff.store.database import Database
from signoff.store.migrate import migrate
from tests.conftest import DATABASE_KINDS
from tests.support import EXAMPLE_POLICY

START = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
AGENT = Principal("agt_support", PrincipalKind.AGENT, "tenant_acme_prod")
ADMIN = Principal("ops", PrincipalKind.HUMAN, "*", frozenset({"admin"}))
ENVELOPE = {
    "request_id": "req_timer",
    "tenant_id": "tenant_acme_prod",
    "user": {"user_id": "usr_771"},
    "agent": {"agent_id": "agt_support"},
    "input": {"intent": "support.refund", "context": {"identity_verified": True}},
}
REFUND = ProposedAction(
    "tc_121", "adp_payments.issue_refund", {"amount": 4200}, RiskClass.DESTRUCTIVE
)
MAIL = ProposedAction("tc_9", "adp_mail.send", {"to": "customer"}, RiskClass.NETWORK)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def run(kind: str, make_database: Callable[[str], str], scenario) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        database = Database(make_database(kind))
        await migrate(database)
        clock = Clock()
        ctx = Context(db=database, policy=RegoPolicy.load(EXAMPLE_POLICY), clock=clock)
        try:
            await scenario(ctx, clock)
        finally:
            await database.close()

    asyncio.run(main())


async def events_of(ctx: Context, instance_id: str) -> list[EventType]:
    found, _ = await audit.list_events(ctx, ADMIN, instance_id, 0, 1000)
    return [e.type for e in found]


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_a_gate_that_times_out_expires_the_action(
    kind: str, make_database: Callable[[str], str]
) -> None:
    async def scenario(ctx: Context, clock: Clock) -> None:
        instance = await instances.invoke_agent(
            ctx, AGENT, dict(ENVELOPE, input={"intent": "support.reply"})
        )
        answer = await decisions.request_decision(ctx, AGENT, instance.instance_id, MAIL)
        assert answer.action and answer.action.gate_ids == ["GATE_DEFAULT"]
        clock.now = START + timedelta(hours=23, minutes=59)
        assert await timers.fire_due(ctx) == 0
        clock.now = START + timedelta(hours=24)
        assert await timers.fire_due(ctx) == 1
        assert await timers.fire_due(ctx) == 0  # fired once; nothing left
        pending, _ = await decisions.list_pending(ctx, ADMIN, "", 1000, "")
        assert answer.action.action_id not in [a.action_id for a in pending]
        records, _ = await audit.list_records(ctx, ADMIN, "", instance.instance_id, 10, "")
        [record] = records
        assert record.status is DecisionStatus.EXPIRED
        assert record.approvals == []  # never recorded as a human rejection
        assert (
            await instances.get_instance(ctx, ADMIN, instance.instance_id)
        ).state is InstanceState.RUNNING
        assert (await events_of(ctx, instance.instance_id))[-1] is EventType.ACTION_EXPIRED
        again = await decisions.request_decision(ctx, AGENT, instance.instance_id, MAIL)
        assert again.action and again.action.state is ActionState.EXPIRED

    run(kind, make_database, scenario)


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_reminders_then_escalation_then_expiry(
    kind: str, make_database: Callable[[str], str]
) -> None:
    async def scenario(ctx: Context, clock: Clock) -> None:
        instance = await instances.invoke_agent(ctx, AGENT, ENVELOPE)
        answer = await decisions.request_decision(ctx, AGENT, instance.instance_id, REFUND)
        assert answer.action and answer.action.gate_ids == ["GATE_FINANCE_APPROVAL"]
        for hours in (4, 20):  # the gate's reminders
            clock.now = START + timedelta(hours=hours)
            assert await timers.fire_due(ctx) == 1
        clock.now = START + timedelta(hours=24)
        assert await timers.fire_due(ctx) == 1  # escalated to the directors, still waiting
        pending, _ = await decisions.list_pending(ctx, ADMIN, "", 1000, "")
        [action] = [a for a in pending if a.action_id == answer.action.action_id]
        assert action.gate_ids == ["GATE_FINANCE_APPROVAL", "GATE_FINANCE_DIRECTOR"]
        assert [g.state.value for g in action.gates] == ["ESCALATED", "WAITING"]
        assert action.gates[1].escalated_from == "GATE_FINANCE_APPROVAL"
        assert action.gates[1].deadline == clock.now + timedelta(hours=48)
        # The finance lead can no longer decide; the directors can.
        with pytest.raises(PermissionDenied, match="not an approver"):
            lead = Principal("user_finance_lead_77", PrincipalKind.HUMAN, "*")
            await decisions.submit_decision(ctx, lead, action.action_id, Verdict.APPROVE, "", "l-1")
        director = Principal(
            "user_finance_director_1", PrincipalKind.HUMAN, "*", frozenset({"finance_director"})
        )
        await decisions.submit_decision(ctx, director, action.action_id, Verdict.APPROVE, "", "d1")
        clock.now = START + timedelta(hours=72)
        assert await timers.fire_due(ctx) == 1
        records, _ = await audit.list_records(ctx, ADMIN, "", instance.instance_id, 10, "")
        # One of two directors voted before the deadline: the EXPIRED record says so.
        assert records[0].status is DecisionStatus.EXPIRED
        assert [a.approver for a in records[0].approvals] == ["user_finance_director_1"]
        assert await events_of(ctx, instance.instance_id) == [
            EventType.INSTANCE_CREATED,
            EventType.ACTION_REQUESTED,
            EventType.ACTION_REMINDER,
            EventType.ACTION_REMINDER,
            EventType.ACTION_ESCALATED,
            EventType.ACTION_VOTED,
            EventType.ACTION_EXPIRED,
        ]

    run(kind, make_database, scenario)


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_timers_survive_a_restart(kind: str, make_database: Callable[[str], str]) -> None:
    url = make_database(kind)

    async def main() -> None:
        policy = RegoPolicy.load(EXAMPLE_POLICY)
        first = Database(url)
        await migrate(first)
        ctx = Context(db=first, policy=policy, clock=lambda: START)
        instance = await instances.invoke_agent(
            ctx, AGENT, dict(ENVELOPE, input={"intent": "support.reply"})
        )
        await decisions.request_decision(ctx, AGENT, instance.instance_id, MAIL)
        await first.close()  # the process goes away; the deadline stays in the database
        second = Database(url)
        later = Context(db=second, policy=policy, clock=lambda: START + timedelta(days=2))
        assert await timers.fire_due(later) == 1
        assert (await events_of(later, instance.instance_id))[-1] is EventType.ACTION_EXPIRED
        await second.close()

    asyncio.run(main())


FIRER = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import datetime
    from pathlib import Path
    from signoff.policy.engine import RegoPolicy
    from signoff.services import timers
    from signoff.services.context import Context
    from signoff.store.database import Database

    async def main():
        database = Database(sys.argv[1])
        now = datetime.fromisoformat(sys.argv[3])
        ctx = Context(db=database, policy=RegoPolicy.load(Path(sys.argv[2])), clock=lambda: now)
        fired = 0
        while (batch := await timers.fire_due(ctx, limit=5)) > 0:
            fired += batch
        print(fired)
        await database.close()

    asyncio.run(main())
    """
)


def test_several_processes_fire_each_timer_exactly_once(
    make_database: Callable[[str], str],
) -> None:
    url = make_database("postgresql")
    count = 40

    async def prepare() -> list[str]:
        database = Database(url)
        await migrate(database)
        ctx = Context(db=database, policy=RegoPolicy.load(EXAMPLE_POLICY), clock=lambda: START)
        ids = []
        for i in range(count):
            envelope = dict(ENVELOPE, request_id=f"req_{i}", input={"intent": "support.reply"})
            instance = await instances.invoke_agent(ctx, AGENT, envelope)
            await decisions.request_decision(ctx, AGENT, instance.instance_id, MAIL)
            ids.append(instance.instance_id)
        await database.close()
        return ids

    ids = asyncio.run(prepare())
    due = (START + timedelta(days=2)).isoformat()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", FIRER, url, str(EXAMPLE_POLICY), due],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    fired = [int(p.communicate(timeout=120)[0]) for p in processes]
    assert all(p.returncode == 0 for p in processes)
    assert sum(fired) == count, fired

    async def check() -> None:
        database = Database(url)
        ctx = Context(db=database, policy=RegoPolicy.load(EXAMPLE_POLICY))
        for instance_id in ids:
            assert (await events_of(ctx, instance_id)).count(EventType.ACTION_EXPIRED) == 1
        await database.close()

    asyncio.run(check())


def test_a_gate_the_bundle_no_longer_defines_expires_its_actions(
    make_database: Callable[[str], str], tmp_path: Path
) -> None:
    changed = tmp_path / "bundle"
    shutil.copytree(EXAMPLE_POLICY, changed)
    gates = changed / "gates.yaml"
    gates.write_text(gates.read_text().replace("GATE_DEFAULT:", "GATE_RENAMED:"))
    url = make_database("sqlite")

    async def main() -> None:
        database = Database(url)
        await migrate(database)
        before = Context(db=database, policy=RegoPolicy.load(EXAMPLE_POLICY), clock=lambda: START)
        instance = await instances.invoke_agent(
            before, AGENT, dict(ENVELOPE, input={"intent": "x"})
        )
        answer = await decisions.request_decision(before, AGENT, instance.instance_id, MAIL)
        assert answer.action and answer.action.gate_ids == ["GATE_DEFAULT"]
        later = START + timedelta(days=2)
        after = Context(db=database, policy=RegoPolicy.load(changed), clock=lambda: later)
        approver = Principal("user_ops_9", PrincipalKind.HUMAN, "*", frozenset({"approver"}))
        with pytest.raises(PermissionDenied, match="not an approver"):  # nobody may approve
            await decisions.submit_decision(
                after, approver, answer.action.action_id, Verdict.APPROVE, "", "x"
            )
        assert await timers.fire_due(after) == 1
        assert (await events_of(after, instance.instance_id))[-1] is EventType.ACTION_EXPIRED
        await database.close()

    asyncio.run(main())
