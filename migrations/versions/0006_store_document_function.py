"""store_document(): GET /store/<id>'s JSON, rendered by PostgreSQL with a cached plan

The function and why it is one: rendering/store_document.py. This version renders deleted
stores too (there were none yet); 0007 replaces it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 09:00:00

"""
from alembic import op

from migrations.replaceable_objects import ReplaceableObject

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# The SQL this version installed, as text: a migration is history and imports nothing that
# changes later (tests/unit/test_structure.py).
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
                WHERE store_id = requested_id ORDER BY id LIMIT 11) item) items,
            (SELECT coalesce(jsonb_agg(tag ORDER BY tag.id), '[]') AS firsts FROM (
                SELECT id, name, store_id FROM tags
                WHERE store_id = requested_id ORDER BY id LIMIT 11) tag) tags
        WHERE store.id = requested_id
    );
END
$$''',
)


def upgrade():
    # SQLite has no functions of SQL: there StoreSchema renders the store.
    if op.get_bind().dialect.name == 'postgresql':
        op.create_sp(STORE_DOCUMENT)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_sp(STORE_DOCUMENT)
