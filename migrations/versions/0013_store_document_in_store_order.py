"""store_document() finds a store's first items and tags in the store's index order, whatever
plan it keeps (rendering/store_document.py, IN_STORE_ORDER)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 15:20:00

"""
from alembic import op

from migrations.replaceable_objects import ReplaceableObject


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


# BETWEEN ... ORDER BY store_id, id: the store's index order, as this version installed it.
STORE_DOCUMENT = ReplaceableObject(
    'store_document(requested_id integer)',
    '''RETURNS text
LANGUAGE plpgsql STABLE STRICT AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object(
            'id', store.id, 'name', store.name, 'owner_id', store.owner_id,
            'items', items.firsts - 10,
            'items_has_more', jsonb_array_length(items.firsts) > 10,
            'items_url', '/store/' || store.id || '/item',
            'tags', tags.firsts - 10,
            'tags_has_more', jsonb_array_length(tags.firsts) > 10,
            'tags_url', '/store/' || store.id || '/tag'
        )::text
        FROM stores store,
            (SELECT coalesce(jsonb_agg(item ORDER BY item.id), '[]') AS firsts FROM (
                SELECT id, name, price, description, store_id FROM items
                WHERE store_id BETWEEN requested_id AND requested_id ORDER BY store_id, id LIMIT 11) item) items,
            (SELECT coalesce(jsonb_agg(tag ORDER BY tag.id), '[]') AS firsts FROM (
                SELECT id, name, store_id FROM tags
                WHERE store_id BETWEEN requested_id AND requested_id ORDER BY store_id, id LIMIT 11) tag) tags
        WHERE store.id = requested_id AND store.deleted_at IS NULL
    );
END
$$''',
)


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.replace_sp(STORE_DOCUMENT, replaces='0007.STORE_DOCUMENT')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.replace_sp(STORE_DOCUMENT, replace_with='0007.STORE_DOCUMENT')
