"""SQLAlchemy Core tables for the whole domain.

Rules (ARCHITECTURE.md §4): every tenant table has `church_id NOT NULL`, and church_id
leads its primary key, unique constraints and indexes, so the schema can be distributed by
church_id on Citus. `messages`, `message_recipients`, `conversation_messages` and `events`
are range-partitioned by month on `created_at`; their partitions are created by
`db.partitions`, never declared here. Enumerations are text columns with CHECK constraints
(cheaper to evolve than native enums).
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, BYTEA, JSONB, UUID

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

PARTITIONED_TABLES = ("messages", "message_recipients", "conversation_messages", "events")

NOW = sa.text("now()")
NEW_UUID = sa.text("gen_random_uuid()")


def _id() -> sa.Column:
    return sa.Column("id", UUID(as_uuid=True), nullable=False, server_default=NEW_UUID)


def _church() -> sa.Column:
    return sa.Column("church_id", UUID(as_uuid=True), nullable=False)


def _created() -> sa.Column:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False,
                     server_default=NOW)


def _one_of(column: str, values: tuple[str, ...], name: str) -> sa.CheckConstraint:
    listed = ", ".join(f"'{v}'" for v in values)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=name)


def _partitioned() -> dict[str, str]:
    return {"postgresql_partition_by": "RANGE (created_at)"}


ROLES = ("owner", "admin", "staff")
PROVIDERS = ("telnyx", "twilio")
NUMBER_STATUSES = ("pending", "linked", "failed")
BROADCAST_STATUSES = ("scheduled", "queued", "sending", "completed", "canceled")
RECIPIENT_STATUSES = ("queued", "sending", "retrying", "sent", "delivered", "failed",
                      "undeliverable", "canceled")
CONVERSATION_STATUSES = ("open", "closed")
DIRECTIONS = ("inbound", "outbound")
CONVERSATION_MESSAGE_STATUSES = ("received", "queued", "sending", "retrying", "sent",
                                 "delivered", "failed")
CONSENT_ACTIONS = ("opt_out", "opt_in", "help", "review")
DELIVERY_STATUSES = ("pending", "delivered", "failed", "dead")
WEBHOOK_DISABLED_REASONS = ("manual", "failing")

churches = sa.Table(
    "churches", metadata,
    _id(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("timezone", sa.Text, nullable=False, server_default="America/New_York"),
    sa.Column("help_text", sa.Text, nullable=False, server_default=sa.text(
        "'Reply STOP to unsubscribe. Msg&data rates may apply.'")),
    sa.Column("unknown_sender_opt_in", sa.Boolean, nullable=False, server_default=sa.true()),
    # Last event id handed out; bumped with UPDATE ... RETURNING inside the writing
    # transaction, so ids are strictly increasing per church in commit order.
    sa.Column("last_event_id", sa.BigInteger, nullable=False, server_default="0"),
    _created(),
    sa.PrimaryKeyConstraint("id"),
)

users = sa.Table(
    "users", metadata,
    _church(), _id(),
    sa.Column("email", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("password_hash", sa.Text, nullable=False),
    _created(),
    sa.PrimaryKeyConstraint("church_id", "id"),
    sa.ForeignKeyConstraint(["church_id"], ["churches.id"], ondelete="CASCADE"),
    _one_of("role", ROLES, "role"),
    # Sign-in is by email alone, so emails are unique across churches. On Citus this
    # small table becomes a reference table.
    sa.Index("uq_users_email_lower", sa.text("lower(email)"), unique=True),
)

members = sa.Table(
    "members", metadata,
    _church(), _id(),
    sa.Column("first_name", sa.Text, nullable=False, server_default=""),
    sa.Column("last_name", sa.Text, nullable=False, server_default=""),
    # AES-GCM ciphertexts carrying their key id (server/platform/crypto.py); never plaintext.
    sa.Column("phone_enc", BYTEA, nullable=False),
    sa.Column("email_enc", BYTEA),
    # HMAC of the E.164 phone with its own key: equality lookups without plaintext.
    sa.Column("phone_hash", BYTEA, nullable=False),
    # HMAC of the phone's last four digits (bound to the church): "search by the last
    # four" without plaintext. NULL only on rows written before it existed, until
    # `ywm index-phones` fills them (server/services/phone_search.py).
    sa.Column("phone_last4_hash", BYTEA),
    sa.Column("opt_in_sms", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("opted_out_at", sa.DateTime(timezone=True)),
    _created(),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.PrimaryKeyConstraint("church_id", "id"),
    sa.ForeignKeyConstraint(["church_id"], ["churches.id"], ondelete="CASCADE"),
    sa.UniqueConstraint("church_id", "phone_hash"),
    sa.Index(None, "church_id", "created_at", "id"),
    sa.Index(None, "church_id", "opt_in_sms"),
    sa.Index(None, "church_id", "phone_last4_hash"),
    # Parenthesised as PostgreSQL reflects it, so `alembic check` sees no drift.
    sa.Index("ix_members_church_id_name", "church_id",
             sa.text("lower((first_name || ' ') || last_name)")),
)

groups = sa.Table(
    "groups", metadata,
    _church(), _id(),
    sa.Column("name", sa.Text, nullable=False),
    _created(),
    sa.PrimaryKeyConstraint("church_id", "id"),
    sa.ForeignKeyConstraint(["church_id"], ["churches.id"], ondelete="CASCADE"),
    sa.Index("uq_groups_church_id_name_lower", "church_id", sa.text("lower(name)"),
             unique=True),
    sa.Index(None, "church_id", "created_at", "id"),
)

group_memberships = sa.Table(
    "group_memberships", metadata,
    _church(),
    sa.Column("group_id", UUID(as_uuid=True), nullable=False),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False),
    _created(),
    sa.PrimaryKeyConstraint("church_id", "group_id", "member_id"),
    sa.ForeignKeyConstraint(["church_id", "group_id"], ["groups.church_id", "groups.id"],
                            ondelete="CASCADE"),
    sa.ForeignKeyConstraint(["church_id", "member_id"], ["members.church_id", "members.id"],
                            ondelete="CASCADE"),
    sa.Index(None, "church_id", "member_id"),
    # GET /groups/{id}/members pages newest-joined first without sorting the whole group.
    sa.Index(None, "church_id", "group_id", "created_at", "member_id"),
)

numbers = sa.Table(
    "numbers", metadata,
    _church(), _id(),
    sa.Column("phone", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("messaging_profile_id", sa.Text),
    sa.Column("mps", sa.Integer, nullable=False),
    sa.Column("provider_handles_opt_out", sa.Boolean, nullable=False,
              server_default=sa.false()),
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),
    sa.Column("link_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_link_error", sa.Text),
    _created(),
    sa.PrimaryKeyConstraint("church_id", "id"),
    sa.ForeignKeyConstraint(["church_id"], ["churches.id"], ondelete="CASCADE"),
    _one_of("provider", PROVIDERS, "provider"),
    _one_of("status", NUMBER_STATUSES, "status"),
    sa.CheckConstraint("mps > 0", name="mps_positive"),
    # A number belongs to exactly one church; inbound routing looks it up by phone alone.
    sa.Index("uq_numbers_phone", "phone", unique=True),
    sa.Index(None, "church_id", "created_at"),
)

messages = sa.Table(
    "messages", metadata,
    _church(), _id(), _created(),
    sa.Column("number_id", UUID(as_uuid=True)),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("scheduled_at", sa.DateTime(timezone=True)),
    sa.Column("group_ids", ARRAY(UUID(as_uuid=True)), nullable=False, server_default="{}"),
    sa.Column("member_ids", ARRAY(UUID(as_uuid=True)), nullable=False, server_default="{}"),
    sa.Column("recipient_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("segments", sa.Integer, nullable=False, server_default="1"),
    sa.Column("encoding", sa.Text, nullable=False, server_default="GSM-7"),
    sa.Column("estimated_cost_cents", sa.Numeric(12, 2), nullable=False, server_default="0"),
    sa.Column("created_by", UUID(as_uuid=True)),
    sa.Column("recurring_id", UUID(as_uuid=True)),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    sa.PrimaryKeyConstraint("church_id", "id", "created_at"),
    _one_of("status", BROADCAST_STATUSES, "status"),
    sa.Index(None, "church_id", "created_at", "id"),
    sa.Index("ix_messages_due", "status", "scheduled_at",
             postgresql_where=sa.text("status = 'scheduled'")),
    **_partitioned(),
)

message_recipients = sa.Table(
    "message_recipients", metadata,
    _church(),
    sa.Column("message_id", UUID(as_uuid=True), nullable=False),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False),
    _created(),
    sa.Column("number_id", UUID(as_uuid=True)),
    sa.Column("phone_enc", BYTEA, nullable=False),
    sa.Column("phone_hash", BYTEA, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="queued"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
    sa.Column("provider", sa.Text),
    sa.Column("provider_message_id", sa.Text),
    sa.Column("last_error", sa.Text),
    sa.Column("sent_at", sa.DateTime(timezone=True)),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    # Set while a send that timed out after its request was written waits for a receipt
    # naming this recipient (status `retrying`); no claim takes the row before the
    # reconciler clears it at this time.
    sa.Column("awaiting_receipt_until", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.PrimaryKeyConstraint("church_id", "message_id", "member_id", "created_at"),
    _one_of("status", RECIPIENT_STATUSES, "status"),
    sa.Index(None, "church_id", "message_id", "status"),
    sa.Index(None, "church_id", "provider_message_id"),
    # A member's group sends, merged into their conversation's timeline at read time.
    sa.Index(None, "church_id", "member_id", "created_at"),
    # The reconciler's scan: only rows that still need work are indexed.
    sa.Index("ix_message_recipients_pending", "next_attempt_at",
             postgresql_where=sa.text("status IN ('queued', 'sending', 'retrying')")),
    **_partitioned(),
)

conversations = sa.Table(
    "conversations", metadata,
    _church(), _id(),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False),
    sa.Column("number_id", UUID(as_uuid=True), nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="open"),
    sa.Column("unread_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("assigned_to", UUID(as_uuid=True)),
    sa.Column("last_message_body", sa.Text),
    sa.Column("last_message_direction", sa.Text),
    sa.Column("last_message_at", sa.DateTime(timezone=True)),
    _created(),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.PrimaryKeyConstraint("church_id", "id"),
    sa.ForeignKeyConstraint(["church_id", "member_id"], ["members.church_id", "members.id"],
                            ondelete="CASCADE"),
    _one_of("status", CONVERSATION_STATUSES, "status"),
    sa.UniqueConstraint("church_id", "member_id", "number_id"),
    sa.Index(None, "church_id", "last_message_at", "id"),
)

conversation_messages = sa.Table(
    "conversation_messages", metadata,
    _church(), _id(), _created(),
    sa.Column("conversation_id", UUID(as_uuid=True), nullable=False),
    sa.Column("direction", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("media_urls", JSONB, nullable=False, server_default="[]"),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("number_id", UUID(as_uuid=True)),
    sa.Column("provider", sa.Text),
    sa.Column("provider_message_id", sa.Text),
    sa.Column("segments", sa.Integer, nullable=False, server_default="1"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
    sa.Column("sent_by", UUID(as_uuid=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.PrimaryKeyConstraint("church_id", "id", "created_at"),
    _one_of("direction", DIRECTIONS, "direction"),
    _one_of("status", CONVERSATION_MESSAGE_STATUSES, "status"),
    sa.Index(None, "church_id", "conversation_id", "created_at", "id"),
    sa.Index(None, "church_id", "provider_message_id"),
    sa.Index("ix_conversation_messages_pending", "next_attempt_at",
             postgresql_where=sa.text("status IN ('queued', 'sending', 'retrying')")),
    **_partitioned(),
)

events = sa.Table(
    "events", metadata,
    _church(),
    sa.Column("id", sa.BigInteger, nullable=False),
    _created(),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("data", JSONB, nullable=False),
    sa.PrimaryKeyConstraint("church_id", "id", "created_at"),
    **_partitioned(),
)

inbound_dedupe = sa.Table(
    # Not a tenant table: a webhook is deduplicated before we know its church.
    "inbound_dedupe", metadata,
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("provider_event_id", sa.Text, nullable=False),
    sa.Column("church_id", UUID(as_uuid=True)),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.PrimaryKeyConstraint("provider", "provider_event_id"),
    sa.Index(None, "received_at"),
)

early_receipts = sa.Table(
    # Delivery receipts that beat the send worker's commit of the provider message id:
    # held here (their dedupe row is kept) and applied by the reconciler once it exists.
    "early_receipts", metadata,
    _church(),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("provider_message_id", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("error_code", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("number_id", UUID(as_uuid=True)),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.PrimaryKeyConstraint("church_id", "provider", "provider_message_id", "status"),
    sa.Index(None, "received_at"),
)

consent_ledger = sa.Table(
    "consent_ledger", metadata,
    _church(), _id(),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False),
    sa.Column("number_id", UUID(as_uuid=True)),
    sa.Column("action", sa.Text, nullable=False),
    # keyword | carrier | staff | api | import
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("keyword", sa.Text),
    sa.Column("detail", sa.Text),
    _created(),
    sa.PrimaryKeyConstraint("church_id", "id"),
    _one_of("action", CONSENT_ACTIONS, "action"),
    sa.Index(None, "church_id", "member_id", "created_at"),
)

recurring_messages = sa.Table(
    "recurring_messages", metadata,
    _church(), _id(),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("group_ids", ARRAY(UUID(as_uuid=True)), nullable=False, server_default="{}"),
    sa.Column("number_id", UUID(as_uuid=True)),
    sa.Column("schedule", sa.Text, nullable=False),
    sa.Column("timezone", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("next_run_at", sa.DateTime(timezone=True)),
    sa.Column("last_run_at", sa.DateTime(timezone=True)),
    sa.Column("created_by", UUID(as_uuid=True)),
    _created(),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.PrimaryKeyConstraint("church_id", "id"),
    sa.ForeignKeyConstraint(["church_id"], ["churches.id"], ondelete="CASCADE"),
    sa.Index("ix_recurring_messages_due", "next_run_at",
             postgresql_where=sa.text("active")),
)

recurring_runs = sa.Table(
    # One row per occurrence: the primary key is what makes an occurrence happen once.
    "recurring_runs", metadata,
    _church(),
    sa.Column("recurring_id", UUID(as_uuid=True), nullable=False),
    sa.Column("occurrence_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("message_id", UUID(as_uuid=True)),
    sa.Column("outcome", sa.Text, nullable=False),  # sent | skipped_late
    _created(),
    sa.PrimaryKeyConstraint("church_id", "recurring_id", "occurrence_at"),
    sa.ForeignKeyConstraint(["church_id", "recurring_id"],
                            ["recurring_messages.church_id", "recurring_messages.id"],
                            ondelete="CASCADE"),
)

api_keys = sa.Table(
    "api_keys", metadata,
    _church(), _id(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("prefix", sa.Text, nullable=False),
    sa.Column("secret_hash", BYTEA, nullable=False),
    sa.Column("previous_secret_hash", BYTEA),
    sa.Column("previous_expires_at", sa.DateTime(timezone=True)),
    sa.Column("scopes", ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("rate_limit_per_minute", sa.Integer),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    _created(),
    sa.PrimaryKeyConstraint("church_id", "id"),
    sa.ForeignKeyConstraint(["church_id"], ["churches.id"], ondelete="CASCADE"),
    # The key's public prefix finds its row before the church is known.
    sa.Index("uq_api_keys_prefix", "prefix", unique=True),
)

webhook_endpoints = sa.Table(
    "webhook_endpoints", metadata,
    _church(), _id(),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("events", ARRAY(sa.Text), nullable=False, server_default="{}"),
    sa.Column("secret_enc", BYTEA, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    _created(),
    # A rotated-away secret still signs until it expires (both signatures are sent).
    sa.Column("previous_secret_enc", BYTEA),
    sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True)),
    # How far into the church's event log this endpoint's deliveries were made.
    sa.Column("last_event_id", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("disabled_at", sa.DateTime(timezone=True)),
    sa.Column("disabled_reason", sa.Text),
    # Set by the first failed delivery after a success; an endpoint failing for
    # `webhook_disable_after_seconds` is disabled.
    sa.Column("failing_since", sa.DateTime(timezone=True)),
    sa.PrimaryKeyConstraint("church_id", "id"),
    sa.ForeignKeyConstraint(["church_id"], ["churches.id"], ondelete="CASCADE"),
    sa.UniqueConstraint("church_id", "url"),
    _one_of("disabled_reason", WEBHOOK_DISABLED_REASONS, "disabled_reason"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries", metadata,
    _church(), _id(),
    sa.Column("endpoint_id", UUID(as_uuid=True), nullable=False),
    sa.Column("event_id", sa.BigInteger),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("payload", JSONB, nullable=False),
    sa.Column("status", sa.Text, nullable=False, server_default="pending"),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("delivered_at", sa.DateTime(timezone=True)),
    _created(),
    # One delivery per (endpoint, event, type) from the cursor; redeliveries have none.
    sa.Column("dedupe_key", sa.Text),
    sa.Column("latency_ms", sa.Integer),
    # A claimed attempt's lease: counts against the endpoint's concurrency until then.
    sa.Column("leased_until", sa.DateTime(timezone=True)),
    sa.PrimaryKeyConstraint("church_id", "id"),
    sa.ForeignKeyConstraint(["church_id", "endpoint_id"],
                            ["webhook_endpoints.church_id", "webhook_endpoints.id"],
                            ondelete="CASCADE"),
    _one_of("status", DELIVERY_STATUSES, "status"),
    sa.Index(None, "church_id", "endpoint_id", "created_at"),
    sa.Index("ix_webhook_deliveries_pending", "next_attempt_at",
             postgresql_where=sa.text("status = 'pending'")),
    sa.Index("uq_webhook_deliveries_dedupe", "church_id", "endpoint_id", "dedupe_key",
             unique=True),
    sa.Index("ix_webhook_deliveries_endpoint_due", "church_id", "endpoint_id",
             "next_attempt_at", postgresql_where=sa.text("status = 'pending'")),
)

dead_letters = sa.Table(
    # Work that ran out of attempts: a broadcast recipient, a reply or a webhook delivery.
    "dead_letters", metadata,
    _church(), _id(),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("ref", JSONB, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("requeued_at", sa.DateTime(timezone=True)),
    _created(),
    sa.PrimaryKeyConstraint("church_id", "id"),
    sa.Index(None, "church_id", "created_at"),
    sa.Index("ix_dead_letters_created_at", "created_at"),
)

idempotency_keys = sa.Table(
    "idempotency_keys", metadata,
    _church(),
    sa.Column("scope", sa.Text, nullable=False),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("request_hash", BYTEA, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response", JSONB, nullable=False),
    _created(),
    sa.PrimaryKeyConstraint("church_id", "scope", "key"),
    sa.Index(None, "created_at"),
)

archive_batches = sa.Table(
    "archive_batches", metadata,
    _church(), _id(),
    sa.Column("table_name", sa.Text, nullable=False),
    sa.Column("month", sa.Date, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("sha256", sa.Text, nullable=False),
    sa.Column("verified_at", sa.DateTime(timezone=True)),
    _created(),
    sa.PrimaryKeyConstraint("church_id", "id"),
    sa.UniqueConstraint("church_id", "table_name", "month"),
)

message_templates = sa.Table(
    # Saved replies and snippets of a church (issue 15): staff use them, admins manage them.
    "message_templates", metadata,
    _church(), _id(),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_by", UUID(as_uuid=True)),
    _created(),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.PrimaryKeyConstraint("church_id", "id"),
    sa.ForeignKeyConstraint(["church_id"], ["churches.id"], ondelete="CASCADE"),
    sa.Index("uq_message_templates_church_id_name_lower", "church_id", sa.text("lower(name)"),
             unique=True),
    sa.Index(None, "church_id", "created_at", "id"),
)

conversation_notes = sa.Table(
    # Staff's internal notes on a conversation (issue 15): never sent to the member.
    "conversation_notes", metadata,
    _church(), _id(),
    sa.Column("conversation_id", UUID(as_uuid=True), nullable=False),
    sa.Column("author_id", UUID(as_uuid=True)),
    sa.Column("body", sa.Text, nullable=False),
    _created(),
    sa.PrimaryKeyConstraint("church_id", "id"),
    sa.ForeignKeyConstraint(["church_id", "conversation_id"],
                            ["conversations.church_id", "conversations.id"],
                            ondelete="CASCADE"),
    sa.Index(None, "church_id", "conversation_id", "created_at", "id"),
)
