"""Reading the trail: decision records and events."""

from signoff.domain.errors import NotFound
from signoff.domain.models import DecisionRecord, Event, Principal
from signoff.services import pagination
from signoff.services.context import Context
from signoff.services.instances import scoped_tenant, visible


async def get_record(ctx: Context, who: Principal, record_id: str) -> DecisionRecord:
    async with ctx.db.read() as tx:
        record = await tx.get_record(record_id)
    if record is None or not who.sees(record.tenant_id):
        raise NotFound("record", record_id)
    return record


async def list_records(
    ctx: Context, who: Principal, tenant_id: str, instance_id: str, size: int, token: str
) -> tuple[list[DecisionRecord], str]:
    limit = pagination.page_size(size, 50)
    scope = scoped_tenant(who, tenant_id)
    if scope is None:
        return [], ""
    tenant_id = scope
    async with ctx.db.read() as tx:
        rows = await tx.list_records(tenant_id, instance_id, pagination.decode(token), limit + 1)
    return pagination.page(rows, limit)


async def list_events(
    ctx: Context, who: Principal, instance_id: str, after_revision: int, size: int
) -> tuple[list[Event], int]:
    limit = pagination.page_size(size, 100)
    async with ctx.db.read() as tx:
        visible(await tx.get_instance(instance_id), who, instance_id)
        events = await tx.list_events(instance_id, after_revision, limit + 1)
    page = events[:limit]
    return page, (page[-1].revision if len(events) > limit else 0)
