"""W3C trace context of instances, actions and events

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("instances", "actions"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("traceparent", sa.String(length=64), server_default="", nullable=False)
            )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("trace_id", sa.String(length=32), server_default="", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("trace_id")
    for table in ("actions", "instances"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("traceparent")
