"""store_document(): GET /store/<id>'s JSON, rendered by PostgreSQL with a cached plan

A PL/pgSQL function keeps the plans of its statements for the life of the server
connection, so the store read is planned once per connection instead of once per request
(psycopg2 never prepares, and psycopg 3 must not behind PgBouncer). Also through PgBouncer:
the plans belong to the server connection, whichever client borrows it. A SQL-language
function would be planned on every call. The document is StoreSchema's, with the first 10
(schemas.NESTED_LIMIT) items and tags: tests/test_stores.py holds the two equal, so a change
of the schema or of the limit needs a new version of this function.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 09:00:00

"""
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


# Each collection reads 11 rows at most, found by the store id itself (the planner then walks
# ix_items_store_id_id), and `- 10` drops the eleventh, which only told whether there are more.
STORE_DOCUMENT = """
CREATE FUNCTION store_document(requested_id integer) RETURNS text
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
$$
"""


def upgrade():
    # SQLite has no functions of SQL: there StoreSchema renders the store.
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(STORE_DOCUMENT)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP FUNCTION store_document(integer)')
