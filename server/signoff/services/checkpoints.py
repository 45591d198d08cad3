"""Decision checkpoints: the agent records what it decided at a checkpoint of its plan (for
example support.refund.eligibility → DECIDED: eligible) as a DecisionRecord in the
instance's chain, beside the records of its gated actions."""

from signoff.domain.canonical import sha256_of
from signoff.domain.errors import ErrorReason, FailedPrecondition, IdempotencyKeyReused
from signoff.domain.ids import new_id
from signoff.domain.models import DecisionRecord, Json, Principal
from signoff.domain.states import TERMINAL_INSTANCE_STATES, DecisionStatus, EventType
from signoff.services.context import Context
from signoff.services.instances import locked_instance
from signoff.services.records import instance_part


def _same(record: DecisionRecord, outcome: str, evidence_refs: list[str], outputs: Json) -> bool:
    """Whether a repeat asks for what the record holds (outputs compared in RFC 8785 form,
    so 4200 and 4200.0 are the same number whichever database gave them back)."""
    return (
        record.checkpoint_outcome == outcome
        and list(record.evidence_refs) == evidence_refs
        and sha256_of(record.outputs) == sha256_of(outputs)
    )


async def record_checkpoint(
    ctx: Context,
    who: Principal,
    instance_id: str,
    decision_id: str,
    outcome: str,
    evidence_refs: list[str],
    outputs: Json,
) -> DecisionRecord:
    """Writes the checkpoint's DecisionRecord (status DECIDED, no action) and the
    CHECKPOINT_RECORDED event that carries its hash, under the instance lock. Idempotent by
    (instance_id, decision_id)."""
    async with ctx.db.write() as tx:
        instance = await locked_instance(tx, instance_id, who)
        existing = await tx.checkpoint_record(instance_id, decision_id)
        if existing is not None:
            if not _same(existing, outcome, evidence_refs, outputs):
                raise IdempotencyKeyReused("decision_id", "checkpoint outcome")
            return existing
        if instance.state in TERMINAL_INSTANCE_STATES:
            raise FailedPrecondition(
                ErrorReason.INSTANCE_NOT_ACTIVE,
                f"instance {instance_id} is {instance.state.value.lower()}; "
                "a checkpoint is recorded while the instance runs",
            )
        now = ctx.clock()
        record = DecisionRecord(
            record_id=new_id("dr"),
            decision_key=decision_id,
            status=DecisionStatus.DECIDED,
            outcome=None,
            action_id="",
            tool="",
            action_sha256="",
            evidence_refs=list(evidence_refs),
            outputs=outputs,
            checkpoint_outcome=outcome,
            **instance_part(instance, now),
        )
        await tx.insert_record(record)
        await tx.append_event(
            instance,
            EventType.CHECKPOINT_RECORDED,
            now,
            actor=who.id,
            reason=f"{decision_id} DECIDED: {outcome}",
            record=record,
        )
        await tx.save_instance(instance)
    return record
