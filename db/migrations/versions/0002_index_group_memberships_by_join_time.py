"""Index group memberships by join time.

`GET /groups/{id}/members` pages a group newest-joined first; without this index every
page sorted the whole group (19 ms for a 10,500-member group, see docs/benchmarks.md).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

NAME = 'ix_group_memberships_church_id_group_id_created_at_member_id'


def upgrade() -> None:
    op.create_index(op.f(NAME), 'group_memberships',
                    ['church_id', 'group_id', 'created_at', 'member_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f(NAME), table_name='group_memberships')
