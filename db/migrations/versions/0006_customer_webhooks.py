"""Customer webhooks: a cursor per endpoint into the event log, secret rotation, disabling.

Each endpoint keeps `last_event_id`, how far into its church's event log deliveries were
made; a rotated secret keeps the previous one (sealed) until it expires; an endpoint that
kept failing is disabled with a reason. Deliveries gain a lease, a latency and a dedupe
key so that advancing a cursor twice never doubles a delivery (docs/webhooks.md).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('webhook_endpoints', sa.Column('previous_secret_enc', sa.LargeBinary(),
                                                 nullable=True))
    op.add_column('webhook_endpoints', sa.Column('previous_secret_expires_at',
                                                 sa.DateTime(timezone=True), nullable=True))
    op.add_column('webhook_endpoints', sa.Column('last_event_id', sa.BigInteger(),
                                                 server_default='0', nullable=False))
    op.add_column('webhook_endpoints', sa.Column('disabled_at', sa.DateTime(timezone=True),
                                                 nullable=True))
    op.add_column('webhook_endpoints', sa.Column('disabled_reason', sa.Text(), nullable=True))
    op.add_column('webhook_endpoints', sa.Column('failing_since', sa.DateTime(timezone=True),
                                                 nullable=True))
    op.create_check_constraint(op.f('ck_webhook_endpoints_disabled_reason'), 'webhook_endpoints',
                               "disabled_reason IN ('manual', 'failing')")
    op.create_unique_constraint(op.f('uq_webhook_endpoints_church_id_url'), 'webhook_endpoints',
                                ['church_id', 'url'])
    op.add_column('webhook_deliveries', sa.Column('dedupe_key', sa.Text(), nullable=True))
    op.add_column('webhook_deliveries', sa.Column('latency_ms', sa.Integer(), nullable=True))
    op.add_column('webhook_deliveries', sa.Column('leased_until', sa.DateTime(timezone=True),
                                                  nullable=True))
    op.create_index('uq_webhook_deliveries_dedupe', 'webhook_deliveries',
                    ['church_id', 'endpoint_id', 'dedupe_key'], unique=True)
    op.create_index('ix_webhook_deliveries_endpoint_due', 'webhook_deliveries',
                    ['church_id', 'endpoint_id', 'next_attempt_at'], unique=False,
                    postgresql_where=sa.text("status = 'pending'"))


def downgrade() -> None:
    op.drop_index('ix_webhook_deliveries_endpoint_due', table_name='webhook_deliveries',
                  postgresql_where=sa.text("status = 'pending'"))
    op.drop_index('uq_webhook_deliveries_dedupe', table_name='webhook_deliveries')
    op.drop_column('webhook_deliveries', 'leased_until')
    op.drop_column('webhook_deliveries', 'latency_ms')
    op.drop_column('webhook_deliveries', 'dedupe_key')
    op.drop_constraint(op.f('uq_webhook_endpoints_church_id_url'), 'webhook_endpoints',
                       type_='unique')
    op.drop_constraint(op.f('ck_webhook_endpoints_disabled_reason'), 'webhook_endpoints',
                       type_='check')
    op.drop_column('webhook_endpoints', 'failing_since')
    op.drop_column('webhook_endpoints', 'disabled_reason')
    op.drop_column('webhook_endpoints', 'disabled_at')
    op.drop_column('webhook_endpoints', 'last_event_id')
    op.drop_column('webhook_endpoints', 'previous_secret_expires_at')
    op.drop_column('webhook_endpoints', 'previous_secret_enc')
