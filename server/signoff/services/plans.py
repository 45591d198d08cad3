"""Plans: the critic's check of an agent's plan before any step runs."""

from dataclasses import dataclass

from signoff.domain.errors import ErrorReason, FailedPrecondition
from signoff.domain.models import Json, Principal
from signoff.domain.plans import Finding, parse_plan
from signoff.domain.states import TERMINAL_INSTANCE_STATES, EventType
from signoff.policy.critic import critique
from signoff.policy.manifest import CompiledContext
from signoff.services.context import Context
from signoff.services.instances import locked_instance


@dataclass(frozen=True)
class PlanVerdict:
    findings: list[Finding]
    plan_sha256: str
    # The revision of the PLAN_CHECKED event.
    revision: int

    @property
    def accepted(self) -> bool:
        return not self.findings


async def check_plan(ctx: Context, who: Principal, instance_id: str, raw_plan: Json) -> PlanVerdict:
    """The critic's verdict on `raw_plan` (the JSON form of signoff.v1.Plan) for the instance.
    A dry run: the only write is the PLAN_CHECKED event that records the verdict."""
    plan = parse_plan(raw_plan)  # INVALID_ARGUMENT before anything is read or written
    async with ctx.db.write() as tx:
        instance = await locked_instance(tx, instance_id, who)
        if instance.state in TERMINAL_INSTANCE_STATES:
            raise FailedPrecondition(
                ErrorReason.INSTANCE_NOT_ACTIVE,
                f"instance {instance_id} is {instance.state.value.lower()}; "
                "a plan is checked for an instance that can still run it",
            )
        findings = critique(
            plan,
            str(instance.envelope.get("input", {}).get("intent", "")),
            CompiledContext(instance.compiled_context),
            instance.budget(),
        )
        verdict = (
            "ACCEPTED"
            if not findings
            else "REJECTED: " + ", ".join(sorted({f.reason.value for f in findings}))
        )
        await tx.append_event(
            instance,
            EventType.PLAN_CHECKED,
            ctx.clock(),
            actor=who.id,
            reason=f"plan {plan.plan_id} {verdict}",
            plan_sha256=plan.sha256,
        )
        await tx.save_instance(instance)
    return PlanVerdict(findings, plan.sha256, instance.revision)
