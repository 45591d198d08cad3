"""Cost budgets: actions' estimated and reported costs, instances' spend, events' budget

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Actions written before costs existed estimated nothing, so 0 spent is exact.
    with op.batch_alter_table("instances", schema=None) as batch_op:
        for column in ("cost_spent_cents", "cost_reserved_cents"):
            batch_op.add_column(sa.Column(column, sa.Double(), server_default="0", nullable=False))
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("estimated_cost_cents", sa.Double(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("cost_cents", sa.Double(), nullable=True))
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "budget",
                sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("budget")
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_column("cost_cents")
        batch_op.drop_column("estimated_cost_cents")
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("cost_reserved_cents")
        batch_op.drop_column("cost_spent_cents")
