"""indexes for children in id order

The reads list a parent's children in id order, first few or page by page (keyset): each
gets an index that leads with the parent and then the id, replacing the parent-only one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 07:00:00

"""
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_items_store_id_id', 'items', ['store_id', 'id'])
    op.drop_index('ix_items_store_id', table_name='items')
    op.create_index('ix_items_tags_tag_id_item_id', 'items_tags', ['tag_id', 'item_id'])
    op.drop_index('ix_items_tags_tag_id', table_name='items_tags')
    op.create_index('ix_tags_store_id_id', 'tags', ['store_id', 'id'])


def downgrade():
    op.drop_index('ix_tags_store_id_id', table_name='tags')
    op.create_index('ix_items_tags_tag_id', 'items_tags', ['tag_id'])
    op.drop_index('ix_items_tags_tag_id_item_id', table_name='items_tags')
    op.create_index('ix_items_store_id', 'items', ['store_id'])
    op.drop_index('ix_items_store_id_id', table_name='items')
