"""events seal the instance's and the action's state; actions name their last event

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02

Existing actions are pointed at the newest event that names them. Their events carry no
seal, so until an action or instance changes again only its state (not its other fields) is
checked against the chain; see docs/audit.md.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Each action names the newest event about it.
POINT_ACTIONS = (
    "UPDATE actions SET event_revision = COALESCE((SELECT max(events.revision) FROM events "
    "WHERE events.instance_id = actions.instance_id AND events.action_id = actions.action_id), 0)"
)


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        for name in ("instance_seal", "action_seal"):
            batch_op.add_column(
                sa.Column(name, sa.String(length=71), server_default="", nullable=False)
            )
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("event_revision", sa.BigInteger(), server_default="0", nullable=False)
        )
    op.execute(POINT_ACTIONS)


def downgrade() -> None:
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_column("event_revision")
    with op.batch_alter_table("events", schema=None) as batch_op:
        for name in ("action_seal", "instance_seal"):
            batch_op.drop_column(name)
