"""hash-chained events

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("chain_head", sa.String(length=71), server_default="", nullable=False)
        )
    with op.batch_alter_table("events", schema=None) as batch_op:
        for name in ("record_sha256", "prev_hash", "hash"):
            batch_op.add_column(
                sa.Column(name, sa.String(length=71), server_default="", nullable=False)
            )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        for name in ("hash", "prev_hash", "record_sha256"):
            batch_op.drop_column(name)
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("chain_head")
