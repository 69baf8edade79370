"""Hold delivery receipts that arrive before their send's provider message id.

A carrier can post `message.sent` before the send worker commits the provider message id;
such receipts are kept in `early_receipts` and applied by the reconciler (see
docs/decisions.md), instead of being answered `unmatched` and lost.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'early_receipts',
        sa.Column('church_id', sa.UUID(), nullable=False),
        sa.Column('provider', sa.Text(), nullable=False),
        sa.Column('provider_message_id', sa.Text(), nullable=False),
        sa.Column('status', sa.Text(), nullable=False),
        sa.Column('error_code', sa.Text(), nullable=True),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('number_id', sa.UUID(), nullable=True),
        sa.Column('received_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.PrimaryKeyConstraint('church_id', 'provider', 'provider_message_id', 'status',
                                name=op.f('pk_early_receipts')))
    op.create_index(op.f('ix_early_receipts_received_at'), 'early_receipts', ['received_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_early_receipts_received_at'), table_name='early_receipts')
    op.drop_table('early_receipts')
