"""store owners, revoked token families, throttles

Existing stores get no owner: only admins may change them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 06:40:00

"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    # SQLite: adding the foreign key copies the table, which must keep its AUTOINCREMENT.
    with op.batch_alter_table('stores', table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('owner_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_stores_owner_id'), ['owner_id'], unique=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_stores_owner_id_users'), 'users', ['owner_id'], ['id'],
            ondelete='SET NULL',
        )

    op.create_table('revoked_token_families',
    sa.Column('family', sa.String(length=36), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('family', name=op.f('pk_revoked_token_families'))
    )
    with op.batch_alter_table('revoked_token_families', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_revoked_token_families_expires_at'), ['expires_at'], unique=False)

    op.create_table('throttles',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.Column('window_ends_at', sa.Double(), nullable=False),
    sa.Column('blocked_until', sa.Double(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_throttles'))
    )
    with op.batch_alter_table('throttles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_throttles_window_ends_at'), ['window_ends_at'], unique=False)


def downgrade():
    op.drop_table('throttles')
    op.drop_table('revoked_token_families')
    with op.batch_alter_table('stores', table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_stores_owner_id_users'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_stores_owner_id'))
        batch_op.drop_column('owner_id')
