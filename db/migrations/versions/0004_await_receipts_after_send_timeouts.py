"""Let a broadcast recipient wait for a receipt after its send timed out.

A send whose request was written but whose answer never came may have been accepted by
the carrier: the recipient waits in `retrying` with `awaiting_receipt_until` set, until a
receipt naming it arrives or the reconciler releases it (see docs/decisions.md).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('message_recipients',
                  sa.Column('awaiting_receipt_until', sa.DateTime(timezone=True),
                            nullable=True))


def downgrade() -> None:
    op.drop_column('message_recipients', 'awaiting_receipt_until')
