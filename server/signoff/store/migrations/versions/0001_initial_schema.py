"""initial schema

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "actions",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("action_id", sa.String(length=64), nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("tool_call_id", sa.String(length=128), nullable=False),
        sa.Column("tool", sa.String(length=128), nullable=False),
        sa.Column(
            "params",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("risk_class", sa.String(length=32), nullable=False),
        sa.Column(
            "evidence_refs",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("action_sha256", sa.String(length=71), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column(
            "gate_ids",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("decided_by", sa.String(length=128), nullable=False),
        sa.Column("decision_reason", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decide_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "policy",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("execution_evidence_ref", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_actions")),
        sa.UniqueConstraint("action_id", name=op.f("uq_actions_action_id")),
        sa.UniqueConstraint(
            "instance_id", "tool_call_id", name=op.f("uq_actions_instance_id_tool_call_id")
        ),
    )
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_actions_waiting",
            ["tenant_id", "seq"],
            unique=False,
            sqlite_where=sa.text("state = 'WAITING_FOR_HUMAN'"),
            postgresql_where=sa.text("state = 'WAITING_FOR_HUMAN'"),
        )
        batch_op.create_index(
            "ix_actions_waiting_all",
            ["seq"],
            unique=False,
            sqlite_where=sa.text("state = 'WAITING_FOR_HUMAN'"),
            postgresql_where=sa.text("state = 'WAITING_FOR_HUMAN'"),
        )

    op.create_table(
        "decision_records",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("action_id", sa.String(length=64), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "body",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_decision_records")),
        sa.UniqueConstraint("action_id", name=op.f("uq_decision_records_action_id")),
        sa.UniqueConstraint("record_id", name=op.f("uq_decision_records_record_id")),
    )
    with op.batch_alter_table("decision_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_decision_records_instance_id_seq"), ["instance_id", "seq"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_decision_records_tenant_id_seq"), ["tenant_id", "seq"], unique=False
        )

    op.create_table(
        "events",
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("instance_state", sa.String(length=32), nullable=False),
        sa.Column("action_id", sa.String(length=64), nullable=False),
        sa.Column("action_state", sa.String(length=32), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("tool", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("instance_id", "revision", name=op.f("pk_events")),
    )
    op.create_table(
        "instances",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("instance_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column(
            "envelope",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("envelope_sha256", sa.String(length=71), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("tool_calls_used", sa.Integer(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("update_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_instances")),
        sa.UniqueConstraint("instance_id", name=op.f("uq_instances_instance_id")),
        sa.UniqueConstraint(
            "tenant_id", "request_id", name=op.f("uq_instances_tenant_id_request_id")
        ),
    )
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_instances_state_seq"), ["state", "seq"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_instances_tenant_id_state_seq"),
            ["tenant_id", "state", "seq"],
            unique=False,
        )

    op.create_table(
        "votes",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("action_id", sa.String(length=64), nullable=False),
        sa.Column("approver", sa.String(length=128), nullable=False),
        sa.Column("verdict", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("request_id", sa.String(length=128), nullable=False),
        sa.Column("request_sha256", sa.String(length=71), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_votes")),
        sa.UniqueConstraint("request_id", name=op.f("uq_votes_request_id")),
    )
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_votes_action_id"), ["action_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("votes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_votes_action_id"))

    op.drop_table("votes")
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_instances_tenant_id_state_seq"))
        batch_op.drop_index(batch_op.f("ix_instances_state_seq"))

    op.drop_table("instances")
    op.drop_table("events")
    with op.batch_alter_table("decision_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decision_records_tenant_id_seq"))
        batch_op.drop_index(batch_op.f("ix_decision_records_instance_id_seq"))

    op.drop_table("decision_records")
    with op.batch_alter_table("actions", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_actions_waiting_all",
            sqlite_where=sa.text("state = 'WAITING_FOR_HUMAN'"),
            postgresql_where=sa.text("state = 'WAITING_FOR_HUMAN'"),
        )
        batch_op.drop_index(
            "ix_actions_waiting",
            sqlite_where=sa.text("state = 'WAITING_FOR_HUMAN'"),
            postgresql_where=sa.text("state = 'WAITING_FOR_HUMAN'"),
        )

    op.drop_table("actions")
