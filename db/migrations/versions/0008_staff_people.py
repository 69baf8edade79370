"""Templates and phone search (issue 15): saved replies, the last-four phone hash.

`members.phone_last4_hash` starts NULL on existing rows: the hash needs the server's hash
key and the sealed phone, which a migration does not have; `ywm migrate` fills them right
after upgrading (or `ywm index-phones` alone), and every write keeps them in step.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('members', sa.Column('phone_last4_hash', postgresql.BYTEA(), nullable=True))
    op.create_index(op.f('ix_members_church_id_phone_last4_hash'), 'members',
                    ['church_id', 'phone_last4_hash'], unique=False)
    op.create_table(
        'message_templates',
        sa.Column('church_id', postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column('id', postgresql.UUID(as_uuid=True), nullable=False,
                  server_default=sa.text('gen_random_uuid()')),
        sa.Column('name', sa.Text(), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_by', postgresql.UUID(as_uuid=True), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.text('now()')),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.text('now()')),
        sa.ForeignKeyConstraint(['church_id'], ['churches.id'],
                                name=op.f('fk_message_templates_church_id_churches'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('church_id', 'id', name=op.f('pk_message_templates')),
    )
    op.create_index('uq_message_templates_church_id_name_lower', 'message_templates',
                    ['church_id', sa.text('lower(name)')], unique=True)
    op.create_index(op.f('ix_message_templates_church_id_created_at_id'), 'message_templates',
                    ['church_id', 'created_at', 'id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_message_templates_church_id_created_at_id'),
                  table_name='message_templates')
    op.drop_index('uq_message_templates_church_id_name_lower', table_name='message_templates')
    op.drop_table('message_templates')
    op.drop_index(op.f('ix_members_church_id_phone_last4_hash'), table_name='members')
    op.drop_column('members', 'phone_last4_hash')
