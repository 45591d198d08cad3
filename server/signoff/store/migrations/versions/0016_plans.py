"""Submitted plans (SubmitPlan) and the one use of each step

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

Document = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("seq", Seq, autoincrement=True, nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("plan_id", sa.String(length=128), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("plan_sha256", sa.String(length=71), nullable=False),
        sa.Column("approval_action_id", sa.String(length=64), server_default="", nullable=False),
        sa.Column("plan", Document, nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_plans")),
        sa.UniqueConstraint("instance_id", "plan_id", name=op.f("uq_plans_instance_id_plan_id")),
    )
    op.create_table(
        "plan_step_uses",
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("plan_id", sa.String(length=128), nullable=False),
        sa.Column("step_id", sa.String(length=128), nullable=False),
        sa.Column("action_id", sa.String(length=64), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "instance_id", "plan_id", "step_id", name=op.f("pk_plan_step_uses")
        ),
        sa.UniqueConstraint("action_id", name=op.f("uq_plan_step_uses_action_id")),
    )


def downgrade() -> None:
    op.drop_table("plan_step_uses")
    op.drop_table("plans")
