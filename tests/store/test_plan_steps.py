"""A step of a submitted plan runs once, and the database says so: on each database, the
step's use is a unique key (plan_step_uses), and calls racing for one approved step give
exactly one approval under the plan approval; the rest are calls of their own."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from signoff.domain.models import Principal, PrincipalKind, ProposedAction
from signoff.domain.plans import StepUse
from signoff.domain.states import Outcome, RiskClass, Verdict
from signoff.policy.engine import RegoPolicy
from signoff.services import decisions, instances, plans
from signoff.services.context import Context
from signoff.store.database import Database, KeyConflict
from signoff.store.migrate import migrate
from tests.conftest import DATABASE_KINDS
from tests.support import EXAMPLE_POLICY

NOW = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
AGENT = Principal("agt_support", PrincipalKind.AGENT, "tenant_acme_prod")
LEAD = Principal("user_finance_lead_77", PrincipalKind.HUMAN, "tenant_acme_prod")
REFUND = {"order_id": "ord_881", "amount": 4200, "currency": "INR"}
PLAN = {
    "plan_id": "plan_refund_01",
    "intent": "support.refund",
    "steps": [
        {
            "id": "s3",
            "tool": "adp_payments.issue_refund",
            "params": REFUND,
            "approval_mode": "DESTRUCTIVE",
        }
    ],
}
ENVELOPE = {
    "request_id": "req_plan_steps",
    "tenant_id": "tenant_acme_prod",
    "user": {"user_id": "usr_771"},
    "agent": {"agent_id": "agt_support"},
    "input": {"intent": "support.refund", "context": {"identity_verified": True}},
}


def refund(tool_call_id: str) -> ProposedAction:
    return ProposedAction(
        tool_call_id, "adp_payments.issue_refund", dict(REFUND), RiskClass.DESTRUCTIVE
    )


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_a_step_runs_once_whoever_races_for_it(
    kind: str, make_database: Callable[[str], str]
) -> None:
    async def main() -> None:
        database = Database(make_database(kind))
        await migrate(database)
        ctx = Context(db=database, policy=RegoPolicy.load(EXAMPLE_POLICY), clock=lambda: NOW)
        try:
            instance = await instances.invoke_agent(ctx, AGENT, ENVELOPE)
            submitted = await plans.submit_plan(ctx, AGENT, instance.instance_id, PLAN)
            assert submitted.approval is not None
            await decisions.submit_decision(
                ctx, LEAD, submitted.approval.action_id, Verdict.APPROVE, "ok", "dec_1"
            )
            answers = await asyncio.gather(
                *(
                    decisions.request_decision(ctx, AGENT, instance.instance_id, refund(f"tc_{i}"))
                    for i in range(6)
                )
            )
            outcomes = sorted(a.outcome.value for a in answers)
            assert outcomes == [Outcome.APPROVED.value] + [Outcome.WAITING_FOR_HUMAN.value] * 5
            async with database.read() as tx:
                uses = await tx.step_uses(instance.instance_id)
            winner = next(a for a in answers if a.outcome is Outcome.APPROVED)
            assert winner.action is not None
            assert [(u.step_id, u.action_id) for u in uses] == [("s3", winner.action.action_id)]

            # The key itself: a second use of the step is refused by the database.
            again = StepUse(instance.instance_id, "plan_refund_01", "s3", "act_other", NOW)
            with pytest.raises(KeyConflict):
                async with database.write() as tx:
                    await tx.insert_step_use(again)
        finally:
            await database.close()

    asyncio.run(main())
