"""PolicyService: a dry run of policy, creating and changing nothing."""

from datetime import UTC, datetime

from signoff.domain.canonical import sha256_of
from signoff.domain.errors import NotFound
from signoff.domain.models import Instance, Json, Principal, ProposedAction
from signoff.domain.plans import PLAN_TOOL
from signoff.domain.states import InstanceState
from signoff.policy import PolicyDecision
from signoff.services import plans
from signoff.services.context import Context
from signoff.services.evaluation import evaluate_policy
from signoff.services.instances import visible


async def evaluate(
    ctx: Context, who: Principal, instance_id: str, envelope: Json | None, proposal: ProposedAction
) -> PolicyDecision:
    if envelope is None:
        async with ctx.db.read() as tx:
            instance = visible(await tx.get_instance(instance_id), who, instance_id)
    else:
        if not who.sees(envelope.get("tenant_id", "")):
            raise NotFound("tenant", envelope.get("tenant_id", ""))
        instance = _unsaved(envelope)
    if proposal.tool == PLAN_TOOL:  # a plan approval: its steps are what policy judges
        return plans.dry_run(ctx, instance, proposal, who)
    return evaluate_policy(ctx, instance, proposal, who)


def _unsaved(envelope: Json) -> Instance:
    """The instance InvokeAgent would create from the envelope, never stored."""
    epoch = datetime.fromtimestamp(0, UTC)
    return Instance(
        instance_id="",
        tenant_id=envelope.get("tenant_id", ""),
        request_id=envelope.get("request_id", ""),
        envelope=envelope,
        envelope_sha256=sha256_of(envelope),
        state=InstanceState.RUNNING,
        revision=0,
        tool_calls_used=0,
        create_time=epoch,
        update_time=epoch,
    )
