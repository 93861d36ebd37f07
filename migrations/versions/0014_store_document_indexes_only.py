"""store_document() plans with indexes only: a plan kept from small tables does not scan
them once grown (rendering/store_document.py, INDEXES_ONLY)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 11:20:00

"""
from alembic import op

from migrations.replaceable_objects import ReplaceableObject


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


# SET enable_seqscan = off, as this version installed it.
STORE_DOCUMENT = ReplaceableObject(
    'store_document(requested_id integer)',
    '''RETURNS text
LANGUAGE plpgsql STABLE STRICT
SET enable_seqscan = off AS $$
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
        op.replace_sp(STORE_DOCUMENT, replaces='0013.STORE_DOCUMENT')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.replace_sp(STORE_DOCUMENT, replace_with='0013.STORE_DOCUMENT')
