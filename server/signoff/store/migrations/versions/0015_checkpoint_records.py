"""Decision checkpoints: a DecisionRecord without an action (RecordCheckpoint)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A checkpoint's record has no action: its action_id is NULL (still unique among the
    # records that have one; NULLs never collide).
    with op.batch_alter_table("decision_records", schema=None) as batch_op:
        batch_op.alter_column("action_id", existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    # Checkpoint records cannot be kept without an action.
    op.execute("DELETE FROM decision_records WHERE action_id IS NULL")
    with op.batch_alter_table("decision_records", schema=None) as batch_op:
        batch_op.alter_column("action_id", existing_type=sa.String(length=64), nullable=False)
