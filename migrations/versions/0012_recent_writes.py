"""recent writes: when each user last wrote, for reads from hot standbys that see their writes

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 15:00:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('recent_writes',
    sa.Column('user_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('written_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('user_id', name=op.f('pk_recent_writes'))
    )


def downgrade():
    op.drop_table('recent_writes')
