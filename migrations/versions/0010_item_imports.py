"""item imports: catalogue files and how their imports went

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 00:48:48

"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('item_imports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('store_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('media_type', sa.String(length=40), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lines_read', sa.Integer(), nullable=False),
    sa.Column('items', sa.Integer(), nullable=False),
    sa.Column('tags_created', sa.Integer(), nullable=False),
    sa.Column('links', sa.Integer(), nullable=False),
    sa.Column('errors', sa.Text(), nullable=True),
    sa.Column('error_count', sa.Integer(), nullable=False),
    sa.Column('message', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['store_id'], ['stores.id'], name=op.f('fk_item_imports_store_id_stores'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_item_imports_user_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_item_imports')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('item_imports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_item_imports_store_id'), ['store_id'], unique=False)

    op.create_table('item_import_chunks',
    sa.Column('import_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['import_id'], ['item_imports.id'], name=op.f('fk_item_import_chunks_import_id_item_imports'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('import_id', 'number', name=op.f('pk_item_import_chunks'))
    )


def downgrade():
    op.drop_table('item_import_chunks')
    with op.batch_alter_table('item_imports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_item_imports_store_id'))

    op.drop_table('item_imports')
