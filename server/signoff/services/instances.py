"""Instance lifecycle: create (idempotently), complete, cancel, read."""

from sqlalchemy.exc import IntegrityError

from signoff.domain.canonical import sha256_of
from signoff.domain.errors import IdempotencyKeyReused, NotFound
from signoff.domain.ids import new_id
from signoff.domain.models import Instance, Json
from signoff.domain.states import (
    ActionState,
    DecisionStatus,
    EventType,
    InstanceState,
    transition_action,
    transition_instance,
)
from signoff.services import pagination
from signoff.services.context import Context
from signoff.services.records import record_for
from signoff.store.repository import Tx


async def invoke_agent(ctx: Context, envelope: Json) -> Instance:
    """Creates the instance for an envelope, or returns the one its request_id created."""
    tenant_id, request_id = envelope["tenant_id"], envelope["request_id"]
    digest = sha256_of(envelope)
    for attempt in (1, 2):
        try:
            async with ctx.db.write() as tx:
                existing = await tx.find_instance_by_request(tenant_id, request_id)
                if existing is not None:
                    if existing.envelope_sha256 != digest:
                        raise IdempotencyKeyReused("request_id", "envelope")
                    return existing
                now = ctx.clock()
                instance = Instance(
                    instance_id=new_id("ins"),
                    tenant_id=tenant_id,
                    request_id=request_id,
                    envelope=envelope,
                    envelope_sha256=digest,
                    state=InstanceState.RUNNING,
                    revision=0,
                    tool_calls_used=0,
                    create_time=now,
                    update_time=now,
                )
                await tx.insert_instance(instance)
                actor = envelope.get("agent", {}).get("agent_id", "")
                await tx.append_event(instance, EventType.INSTANCE_CREATED, now, actor=actor)
                await tx.save_instance(instance)
                return instance
        except IntegrityError:
            # A concurrent call with the same request_id committed first: read its result.
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def locked_instance(tx: Tx, instance_id: str) -> Instance:
    instance = await tx.get_instance(instance_id, lock=True)
    if instance is None:
        raise NotFound("instance", instance_id)
    return instance


async def complete_instance(ctx: Context, instance_id: str) -> Instance:
    async with ctx.db.write() as tx:
        instance = await locked_instance(tx, instance_id)
        if instance.state is InstanceState.COMPLETED:
            return instance  # a repeated call
        instance.state = transition_instance(instance.state, InstanceState.COMPLETED)
        await tx.append_event(instance, EventType.INSTANCE_COMPLETED, ctx.clock(), actor="agent")
        await tx.save_instance(instance)
        return instance


async def cancel_instance(ctx: Context, instance_id: str, reason: str) -> Instance:
    """Terminates the instance; nothing on it may execute afterwards."""
    async with ctx.db.write() as tx:
        instance = await locked_instance(tx, instance_id)
        if instance.state is InstanceState.TERMINATED:
            return instance  # a repeated call
        target = transition_instance(instance.state, InstanceState.TERMINATED)
        now = ctx.clock()
        pending = {ActionState.WAITING_FOR_HUMAN, ActionState.APPROVED}
        for action in await tx.actions_in_states(instance_id, pending):
            previous = action.state
            action.state = transition_action(previous, ActionState.CANCELLED)
            await tx.save_action(action, expected_state=previous)
            record_id = ""
            if previous is ActionState.WAITING_FOR_HUMAN:
                record = record_for(action, DecisionStatus.CANCELLED, instance.revision + 1, now)
                await tx.insert_record(record)
                record_id = record.record_id
            else:
                # The approval stands in its record; the record now also says it was revoked.
                approved = await tx.get_record_for_action(action.action_id)
                if approved is not None:
                    approved.execution_state = ActionState.CANCELLED
                    await tx.attach_execution(approved)
                    record_id = approved.record_id
            await tx.append_event(
                instance,
                EventType.ACTION_CANCELLED,
                now,
                action=action,
                actor="agent",
                reason=reason,
                record_id=record_id,
            )
        instance.state = target
        await tx.append_event(
            instance, EventType.INSTANCE_TERMINATED, now, actor="agent", reason=reason
        )
        await tx.save_instance(instance)
        return instance


async def get_instance(ctx: Context, instance_id: str) -> Instance:
    async with ctx.db.read() as tx:
        instance = await tx.get_instance(instance_id)
    if instance is None:
        raise NotFound("instance", instance_id)
    return instance


async def list_instances(
    ctx: Context, tenant_id: str, state: InstanceState | None, size: int, token: str
) -> tuple[list[Instance], str]:
    limit = pagination.page_size(size, 50)
    async with ctx.db.read() as tx:
        rows = await tx.list_instances(tenant_id, state, pagination.decode(token), limit + 1)
    page = rows[:limit]
    next_token = pagination.encode(page[-1][0]) if len(rows) > limit else ""
    return [instance for _, instance in page], next_token
