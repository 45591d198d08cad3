"""The tables. Migrations in store/migrations must produce exactly this schema."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Dialect,
    Double,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way out, whatever the database keeps."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY autoincrements.
Seq = BigInteger().with_variant(Integer(), "sqlite")
Document: Any = JSON().with_variant(JSONB(), "postgresql")
Id = String(64)
Key = String(128)
State = String(32)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

instances = Table(
    "instances",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("instance_id", Id, nullable=False, unique=True),
    Column("tenant_id", Key, nullable=False),
    Column("request_id", Key, nullable=False),
    Column("envelope", Document, nullable=False),
    Column("envelope_sha256", String(71), nullable=False),
    Column("state", State, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("tool_calls_used", Integer, nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
    Column("update_time", UTCDateTime, nullable=False),
    Column("created_by", Key, nullable=False, server_default=""),
    Column("chain_head", String(71), nullable=False, server_default=""),
    # The W3C traceparent the agent sent with InvokeAgent ("" when none).
    Column("traceparent", String(64), nullable=False, server_default=""),
    Column("cost_spent_cents", Double, nullable=False, server_default="0"),
    Column("cost_reserved_cents", Double, nullable=False, server_default="0"),
    # What InvokeAgent compiled for the intent ({} when the bundle declares nothing).
    Column("compiled_context", Document, nullable=False, server_default="{}"),
    UniqueConstraint("tenant_id", "request_id"),
    Index(None, "tenant_id", "state", "seq"),
    Index(None, "state", "seq"),
)

actions = Table(
    "actions",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("action_id", Id, nullable=False, unique=True),
    Column("instance_id", Id, nullable=False),
    Column("tenant_id", Key, nullable=False),
    Column("tool_call_id", Key, nullable=False),
    Column("tool", Key, nullable=False),
    Column("params", Document, nullable=False),
    Column("risk_class", State, nullable=False),
    Column("evidence_refs", Document, nullable=False),
    Column("action_sha256", String(71), nullable=False),
    Column("state", State, nullable=False),
    Column("gate_ids", Document, nullable=False),
    Column("decided_by", Key, nullable=False),
    Column("decision_reason", Text, nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
    Column("decide_time", UTCDateTime, nullable=True),
    Column("policy", Document, nullable=False),
    Column("execution_evidence_ref", Text, nullable=False),
    # Each gate's votes and deadline (GateStatus as JSON); read and written with the action.
    Column("gates", Document, nullable=False, server_default="[]"),
    Column("proposed_sha256", String(71), nullable=False, server_default=""),
    # The earliest deadline or reminder of a waiting gate: what the timer looks for.
    Column("next_due", UTCDateTime, nullable=True),
    Column("grant_sha256", String(71), nullable=False, server_default=""),
    Column("grant_expires", UTCDateTime, nullable=True),
    # The W3C traceparent of the RequestDecision call: the human wait joins this trace.
    Column("traceparent", String(64), nullable=False, server_default=""),
    # The revision of the event that last changed the action: that event seals the row's
    # state (domain/chain.py), and reads that lead to a decision check the row against it.
    Column("event_revision", BigInteger, nullable=False, server_default="0"),
    Column("estimated_cost_cents", Double, nullable=False, server_default="0"),
    Column("cost_cents", Double, nullable=True),
    UniqueConstraint("instance_id", "tool_call_id"),
    # Pending-approval pages read only waiting rows, in order: O(page), not O(table).
    Index(
        "ix_actions_waiting",
        "tenant_id",
        "seq",
        sqlite_where=text("state = 'WAITING_FOR_HUMAN'"),
        postgresql_where=text("state = 'WAITING_FOR_HUMAN'"),
    ),
    Index(
        "ix_actions_waiting_all",
        "seq",
        sqlite_where=text("state = 'WAITING_FOR_HUMAN'"),
        postgresql_where=text("state = 'WAITING_FOR_HUMAN'"),
    ),
    Index(
        "ix_actions_due",
        "next_due",
        sqlite_where=text("state = 'WAITING_FOR_HUMAN'"),
        postgresql_where=text("state = 'WAITING_FOR_HUMAN'"),
    ),
)

events = Table(
    "events",
    metadata,
    Column("instance_id", Id, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("tenant_id", Key, nullable=False),
    Column("type", State, nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("instance_state", State, nullable=False),
    Column("action_id", Id, nullable=False),
    Column("action_state", State, nullable=True),
    Column("outcome", State, nullable=True),
    Column("actor", Key, nullable=False),
    Column("reason", Text, nullable=False),
    Column("record_id", Id, nullable=False),
    Column("tool", Key, nullable=False),
    Column("gate_id", Key, nullable=False, server_default=""),
    Column("controls", Document, nullable=False, server_default="{}"),
    Column("record_sha256", String(71), nullable=False, server_default=""),
    Column("prev_hash", String(71), nullable=False, server_default=""),
    Column("hash", String(71), nullable=False, server_default=""),
    Column("trace_id", String(32), nullable=False, server_default=""),
    # The sha256 of the instance's and the action's state after this event ("" before 0010).
    Column("instance_seal", String(71), nullable=False, server_default=""),
    Column("action_seal", String(71), nullable=False, server_default=""),
    Column("budget", Document, nullable=True),
    Column("plan_sha256", String(71), nullable=False, server_default=""),
    PrimaryKeyConstraint("instance_id", "revision"),
)

votes = Table(
    "votes",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("action_id", Id, nullable=False, index=True),
    # The action's tenant: request ids are unique per tenant, so one tenant cannot learn
    # from an IDEMPOTENCY_KEY_REUSED that another already used a key.
    Column("tenant_id", Key, nullable=False),
    Column("approver", Key, nullable=False),
    Column("verdict", State, nullable=False),
    Column("reason", Text, nullable=False),
    Column("request_id", Key, nullable=False),
    Column("request_sha256", String(71), nullable=False),
    Column("time", UTCDateTime, nullable=False),
    Column("gate_ids", Document, nullable=False, server_default="[]"),
    Column("evidence_snapshot_hash", String(71), nullable=False, server_default=""),
    Column("params_diff", Document, nullable=False, server_default="{}"),
    # One approver votes once on an action.
    UniqueConstraint("action_id", "approver"),
    UniqueConstraint("tenant_id", "request_id"),
)

decision_records = Table(
    "decision_records",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("record_id", Id, nullable=False, unique=True),
    Column("tenant_id", Key, nullable=False),
    Column("instance_id", Id, nullable=False),
    # NULL for the record of a decision checkpoint (RecordCheckpoint), which has no action.
    Column("action_id", Id, nullable=True, unique=True),
    Column("create_time", UTCDateTime, nullable=False),
    Column("body", Document, nullable=False),
    Index(None, "tenant_id", "seq"),
    Index(None, "instance_id", "seq"),
)

# Each tenant's feed of changes to waiting approvals. The cursor is allocated by bumping the
# tenant's row in approval_feeds, which stays locked until commit: cursors follow commit
# order, so a reader resuming after cursor N can never skip a change committed later.
approval_feeds = Table(
    "approval_feeds",
    metadata,
    Column("tenant_id", Key, primary_key=True),
    Column("last_cursor", BigInteger, nullable=False),
)

approval_changes = Table(
    "approval_changes",
    metadata,
    Column("tenant_id", Key, nullable=False),
    Column("cursor", BigInteger, nullable=False),
    Column("kind", State, nullable=False),
    Column("action_id", Id, nullable=False),
    Column("instance_id", Id, nullable=False),
    Column("revision", BigInteger, nullable=False),
    Column("action_state", State, nullable=False),
    Column("tool", Key, nullable=False),
    Column("gate_id", Key, nullable=False),
    Column("actor", Key, nullable=False),
    Column("time", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("tenant_id", "cursor"),
)

# The transactional outbox of webhook notifications: one row per (approval change, webhook),
# inserted in the transaction of the change. A deliverer claims due PENDING rows by moving
# next_attempt past a lease, posts outside any transaction, then marks the row DELIVERED,
# or PENDING again later (retry), or FAILED after the last attempt. Rows are kept.
webhook_outbox = Table(
    "webhook_outbox",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("delivery_id", Id, nullable=False, unique=True),
    Column("webhook", Key, nullable=False),
    Column("tenant_id", Key, nullable=False),
    Column("event", State, nullable=False),
    Column("action_id", Id, nullable=False),
    # The exact request body, built once: every retry sends the same bytes.
    Column("body", Text, nullable=False),
    Column("state", State, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt", UTCDateTime, nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
    Column("delivered_time", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=False),
    # What the deliverers look for: O(due rows), however many were delivered before.
    Index(
        "ix_webhook_outbox_pending",
        "next_attempt",
        sqlite_where=text("state = 'PENDING'"),
        postgresql_where=text("state = 'PENDING'"),
    ),
    # What retention removes: the oldest rows, without reading the newer ones.
    Index("ix_webhook_outbox_create_time", "create_time"),
)

# The Slack message of each action a slack_interactive webhook posted (docs/slack.md), so
# that later changes update it in place (chat.update needs its channel and ts).
slack_messages = Table(
    "slack_messages",
    metadata,
    Column("webhook", Key, nullable=False),
    Column("action_id", Id, nullable=False),
    Column("channel", Id, nullable=False),
    Column("ts", Id, nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("webhook", "action_id"),
)

# The plans agents submitted (SubmitPlan), one per (instance, plan_id): the parsed plan with
# each step's route (what policy said of it at submission), the sha256 of its params as
# approved (narrowed by an approver's edit), and its params as stored (redacted).
plans = Table(
    "plans",
    metadata,
    Column("seq", Seq, primary_key=True, autoincrement=True),
    Column("instance_id", Id, nullable=False),
    Column("plan_id", Key, nullable=False),
    Column("tenant_id", Key, nullable=False),
    Column("plan_sha256", String(71), nullable=False),
    # The action whose approval covers the gated steps ("" when no step is gated).
    Column("approval_action_id", Id, nullable=False, server_default=""),
    Column("plan", Document, nullable=False),
    Column("create_time", UTCDateTime, nullable=False),
    UniqueConstraint("instance_id", "plan_id"),
)

# Which action ran which step of a submitted plan. The primary key is the rule that a step
# runs once: of two calls racing for one step, exactly one inserts its row.
plan_step_uses = Table(
    "plan_step_uses",
    metadata,
    Column("instance_id", Id, nullable=False),
    Column("plan_id", Key, nullable=False),
    Column("step_id", Key, nullable=False),
    Column("action_id", Id, nullable=False, unique=True),
    Column("create_time", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("instance_id", "plan_id", "step_id"),
)
