"""gates votes and timers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "gates",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                server_default="[]",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("proposed_sha256", sa.String(length=71), server_default="", nullable=False)
        )
        batch_op.add_column(sa.Column("next_due", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(
            "ix_actions_due",
            ["next_due"],
            unique=False,
            sqlite_where=sa.text("state = 'WAITING_FOR_HUMAN'"),
            postgresql_where=sa.text("state = 'WAITING_FOR_HUMAN'"),
        )

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("gate_id", sa.String(length=128), server_default="", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "controls",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                server_default="{}",
                nullable=False,
            )
        )

    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "gate_ids",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                server_default="[]",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column(
                "evidence_snapshot_hash", sa.String(length=71), server_default="", nullable=False
            )
        )
        batch_op.add_column(
            sa.Column(
                "params_diff",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                server_default="{}",
                nullable=False,
            )
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_votes_action_id_approver"), ["action_id", "approver"]
        )


def downgrade() -> None:
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_votes_action_id_approver"), type_="unique")
        batch_op.drop_column("params_diff")
        batch_op.drop_column("evidence_snapshot_hash")
        batch_op.drop_column("gate_ids")

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("controls")
        batch_op.drop_column("gate_id")

    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_actions_due",
            sqlite_where=sa.text("state = 'WAITING_FOR_HUMAN'"),
            postgresql_where=sa.text("state = 'WAITING_FOR_HUMAN'"),
        )
        batch_op.drop_column("next_due")
        batch_op.drop_column("proposed_sha256")
        batch_op.drop_column("gates")
