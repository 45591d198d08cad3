"""Instance lifecycle: create (idempotently), complete, cancel, read."""

from datetime import datetime

from signoff.domain.canonical import sha256_of
from signoff.domain.errors import ErrorReason, IdempotencyKeyReused, NotFound, PermissionDenied
from signoff.domain.ids import new_id
from signoff.domain.models import ALL_TENANTS, Instance, Json, Principal
from signoff.domain.states import (
    ActionState,
    EventType,
    InstanceState,
    transition_instance,
)
from signoff.services import pagination
from signoff.services.context import Context, once_more_on_key_conflict
from signoff.services.settling import settle
from signoff.store.unit import Repository


def visible(instance: Instance | None, who: Principal, instance_id: str) -> Instance:
    """Another tenant's instance answers exactly like a missing one: no existence leak."""
    if instance is None or not who.sees(instance.tenant_id):
        raise NotFound("instance", instance_id)
    return instance


async def invoke_agent(
    ctx: Context, who: Principal, envelope: Json, traceparent: str = ""
) -> Instance:
    """Creates the instance for an envelope, or returns the one its request_id created.
    `traceparent` is the W3C trace context of the call, stored with a new instance."""
    tenant_id, request_id = envelope["tenant_id"], envelope["request_id"]
    if not who.sees(tenant_id):
        raise PermissionDenied(
            ErrorReason.TENANT_NOT_ALLOWED,
            f"{who.id} acts in tenant {who.tenant}, not {tenant_id}",
            metadata={"tenant_id": tenant_id},
        )
    digest = sha256_of(envelope)

    async def create() -> Instance:
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
                created_by=who.id,
                traceparent=traceparent,
                compiled_context=ctx.policy.compile(envelope),
            )
            await tx.insert_instance(instance)
            actor = envelope.get("agent", {}).get("agent_id", "")
            await tx.append_event(instance, EventType.INSTANCE_CREATED, now, actor=actor)
            await tx.save_instance(instance)
            return instance

    return await once_more_on_key_conflict(create)


async def locked_instance(tx: Repository, instance_id: str, who: Principal) -> Instance:
    return visible(await tx.get_instance(instance_id, lock=True), who, instance_id)


async def complete_instance(ctx: Context, who: Principal, instance_id: str) -> Instance:
    """Ends a running instance. Executions must be reported before: afterwards the trail
    is closed (the terminal event is always the last)."""
    async with ctx.db.write() as tx:
        instance = await locked_instance(tx, instance_id, who)
        if instance.state is InstanceState.COMPLETED:
            return instance  # a repeated call
        instance.state = transition_instance(instance.state, InstanceState.COMPLETED)
        await tx.append_event(instance, EventType.INSTANCE_COMPLETED, ctx.clock(), actor="agent")
        await tx.save_instance(instance)
        return instance


async def cancel_instance(ctx: Context, who: Principal, instance_id: str, reason: str) -> Instance:
    """Terminates the instance; nothing on it may execute afterwards."""
    async with ctx.db.write() as tx:
        instance = await locked_instance(tx, instance_id, who)
        if instance.state is InstanceState.TERMINATED:
            return instance  # a repeated call
        target = transition_instance(instance.state, InstanceState.TERMINATED)
        now = ctx.clock()
        await revoke_open_actions(tx, instance, now, reason, actor=who.id)
        instance.state = target
        await tx.append_event(
            instance, EventType.INSTANCE_TERMINATED, now, actor=who.id, reason=reason
        )
        await tx.save_instance(instance)
        return instance


async def revoke_open_actions(
    tx: Repository, instance: Instance, now: datetime, reason: str, actor: str = "agent"
) -> None:
    """Cancels what waits and what was approved but not executed: nothing on a cancelled
    instance may run."""
    open_states = {ActionState.WAITING_FOR_HUMAN, ActionState.APPROVED}
    for action in await tx.actions_in_states(instance.instance_id, open_states):
        await settle(tx, instance, action, ActionState.CANCELLED, now, actor=actor, reason=reason)


async def get_instance(ctx: Context, who: Principal, instance_id: str) -> Instance:
    async with ctx.db.read() as tx:
        return visible(await tx.get_instance(instance_id), who, instance_id)


def scoped_tenant(who: Principal, tenant_id: str) -> str | None:
    """The tenant a listing covers: the caller's own unless it is platform-wide.
    None when the caller asked for a tenant it cannot see (the listing is empty)."""
    if who.tenant == ALL_TENANTS:
        return tenant_id
    if tenant_id and tenant_id != who.tenant:
        return None
    return who.tenant


async def list_instances(
    ctx: Context,
    who: Principal,
    tenant_id: str,
    state: InstanceState | None,
    size: int,
    token: str,
) -> tuple[list[Instance], str]:
    limit = pagination.page_size(size, 50)
    scope = scoped_tenant(who, tenant_id)
    if scope is None:
        return [], ""
    tenant_id = scope
    async with ctx.db.read() as tx:
        rows = await tx.list_instances(tenant_id, state, pagination.decode(token), limit + 1)
    return pagination.page(rows, limit)
