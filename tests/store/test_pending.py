"""The pending-approvals list and SubmitDecision share one rule (domain.gates.may_decide):
for generated principals, instances and gates, what the query lists is exactly what the
rule admits, page by page, on each database."""

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from signoff.domain.gates import parties_of
from signoff.domain.models import Action, Principal, PrincipalKind, ProposedAction
from signoff.domain.states import RiskClass
from signoff.policy.engine import RegoPolicy
from signoff.services import decisions, gating, instances, timers
from signoff.services.context import Context
from signoff.store.database import Database
from signoff.store.migrate import migrate
from tests.conftest import DATABASE_KINDS
from tests.support import EXAMPLE_POLICY

TENANT = "tenant_pending"
START = datetime(2026, 5, 4, 9, 30, tzinfo=UTC)
ADMIN = Principal("ops", PrincipalKind.HUMAN, "*", frozenset({"admin"}))
PEOPLE = [
    "user_finance_lead_77",
    "user_finance_lead_78",
    "user_finance_director_1",
    "user_finance_director_2",
    "user_mod_lead_12",
    "user_ops_9",
    "usr_771",
]
AGENTS = ["agt_support", "user_ops_9", "user_finance_director_1"]
ROLES = [frozenset(), frozenset({"approver"}), frozenset({"finance_director"})]
# (intent, proposal): each waits on a different gate of the example bundle.
WORK = [
    (
        "support.refund",
        ProposedAction("tc", "adp_payments.issue_refund", {"amount": 4200}, RiskClass.DESTRUCTIVE),
    ),
    (
        "support.refund",
        ProposedAction(
            "tc", "adp_payments.issue_refund", {"amount": 250_000}, RiskClass.DESTRUCTIVE
        ),
    ),
    ("support.reply", ProposedAction("tc", "adp_mail.send", {"to": "c"}, RiskClass.NETWORK)),
    (
        "content.review",
        ProposedAction("tc", "adp_content.publish_block", {"confidence": 0.9}, RiskClass.DELEGATED),
    ),
]


async def generate(ctx: Context, rng: random.Random, batch: int) -> None:
    for n in range(batch * 100, batch * 100 + 10):
        creator = Principal(rng.choice(AGENTS), PrincipalKind.AGENT, TENANT)
        intent, proposal = rng.choice(WORK)
        envelope = {
            "request_id": f"req_{n}",
            "tenant_id": TENANT,
            "user": {"user_id": rng.choice(PEOPLE)},
            "agent": {"agent_id": rng.choice(AGENTS)},
            "input": {"intent": intent, "context": {"identity_verified": True}},
        }
        if n % 5 == 0:
            del envelope["user"]  # a party may be absent
        instance = await instances.invoke_agent(ctx, creator, envelope)
        for k in range(rng.randint(1, 2)):
            tool_call = ProposedAction(
                f"tc_{n}_{k}", proposal.tool, proposal.params, proposal.risk_class
            )
            await decisions.request_decision(ctx, creator, instance.instance_id, tool_call)


async def listed(ctx: Context, who: Principal, page_size: int) -> list[str]:
    ids, token = [], ""
    while True:
        page, token = await decisions.list_pending(ctx, who, TENANT, page_size, token)
        ids += [a.action_id for a in page]
        if not token:
            return ids


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_the_pending_list_is_what_may_decide_admits(
    kind: str, make_database: Callable[[str], str]
) -> None:
    async def main() -> None:
        database = Database(make_database(kind))
        await migrate(database)
        clock = [START]
        ctx = Context(db=database, policy=RegoPolicy.load(EXAMPLE_POLICY), clock=lambda: clock[0])
        try:
            rng = random.Random(7)
            await generate(ctx, rng, 0)
            # The gates of the first batch time out: finance approvals escalate to
            # directors, the others expire. The second batch waits on its first gates.
            clock[0] = START + timedelta(hours=24)
            await timers.fire_due(ctx)
            await generate(ctx, rng, 1)

            everything: list[tuple[Action, frozenset[str]]] = []
            for action in await listed_all(ctx):
                instance = await instances.get_instance(ctx, ADMIN, action.instance_id)
                everything.append((action, parties_of(instance)))
            assert len(everything) > 5
            assert len({g.gate_id for a, _ in everything for g in a.waiting_gates()}) > 2

            checked = 0
            for person in PEOPLE + AGENTS:
                for roles in ROLES:
                    who = Principal(person, PrincipalKind.HUMAN, TENANT, roles)
                    expected = [
                        a.action_id
                        for a, parties in everything
                        if gating.may_decide(ctx.policy, who, parties, a)
                    ]
                    for page_size in (1, 3, 1000):
                        assert await listed(ctx, who, page_size) == expected, (who, page_size)
                    # The query's own filter is parties_of, neither more nor less.
                    async with ctx.db.read() as tx:
                        rows = await tx.list_waiting_actions(TENANT, None, 1000, who.id)
                    assert [a.action_id for _, (a, _) in rows] == [
                        a.action_id for a, parties in everything if who.id not in parties
                    ]
                    checked += bool(expected)
            assert checked > 5  # the rule admitted somebody to something, often
        finally:
            await database.close()

    asyncio.run(main())


async def listed_all(ctx: Context) -> list[Action]:
    """Every waiting action of the tenant: what an admin sees."""
    actions, token = [], ""
    while True:
        page, token = await decisions.list_pending(ctx, ADMIN, TENANT, 1000, token)
        actions += page
        if not token:
            return actions
