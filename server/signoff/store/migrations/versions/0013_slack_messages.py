"""the Slack messages of slack_interactive webhooks, to update them in place

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "slack_messages",
        sa.Column("webhook", sa.String(length=128), nullable=False),
        sa.Column("action_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("ts", sa.String(length=64), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("webhook", "action_id", name="pk_slack_messages"),
    )


def downgrade() -> None:
    op.drop_table("slack_messages")
