"""Staff inbox workflows (issue 15): internal notes, and a member's group sends by member.

`conversation_notes` holds staff's notes on a conversation (never sent). The index on
`message_recipients (church_id, member_id, created_at)` lets a conversation's timeline
merge the member's group sends at read time; on the partitioned parent it is created on
every partition (and on those created later).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'conversation_notes',
        sa.Column('church_id', sa.UUID(), nullable=False),
        sa.Column('id', sa.UUID(), server_default=sa.text('gen_random_uuid()'),
                  nullable=False),
        sa.Column('conversation_id', sa.UUID(), nullable=False),
        sa.Column('author_id', sa.UUID(), nullable=True),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'),
                  nullable=False),
        sa.ForeignKeyConstraint(
            ['church_id', 'conversation_id'], ['conversations.church_id', 'conversations.id'],
            name=op.f('fk_conversation_notes_church_id_conversation_id_conversations'),
            ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('church_id', 'id', name=op.f('pk_conversation_notes')))
    op.create_index(op.f('ix_conversation_notes_church_id_conversation_id_created_at_id'),
                    'conversation_notes', ['church_id', 'conversation_id', 'created_at', 'id'],
                    unique=False)
    op.create_index(op.f('ix_message_recipients_church_id_member_id_created_at'),
                    'message_recipients', ['church_id', 'member_id', 'created_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_message_recipients_church_id_member_id_created_at'),
                  table_name='message_recipients')
    op.drop_index(op.f('ix_conversation_notes_church_id_conversation_id_created_at_id'),
                  table_name='conversation_notes')
    op.drop_table('conversation_notes')
