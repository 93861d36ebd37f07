"""item imports count their attempts: one failing on a database error is given up after a few

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 04:30:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('item_imports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))


def downgrade():
    with op.batch_alter_table('item_imports', schema=None) as batch_op:
        batch_op.drop_column('attempts')
