"""votes: request ids unique per tenant, not across tenants

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tenant_id", sa.String(length=128), nullable=True))
    # Every vote belongs to an action; the action's tenant is the vote's.
    op.execute(
        "UPDATE votes SET tenant_id = "
        "(SELECT actions.tenant_id FROM actions WHERE actions.action_id = votes.action_id)"
    )
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.alter_column("tenant_id", existing_type=sa.String(length=128), nullable=False)
        batch_op.drop_constraint(batch_op.f("uq_votes_request_id"), type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_votes_tenant_id_request_id"), ["tenant_id", "request_id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_votes_tenant_id_request_id"), type_="unique")
        batch_op.create_unique_constraint(batch_op.f("uq_votes_request_id"), ["request_id"])
        batch_op.drop_column("tenant_id")
