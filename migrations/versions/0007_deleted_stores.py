"""deleted stores: kept, hidden, until they expire

A deleted store keeps its row and its children's until `expire_time`; its name is free for
a new store at once (a unique index of live stores' names instead of all names).
store_document() renders live stores only (rendering/store_document.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 10:20:00

"""
from alembic import op
import sqlalchemy as sa

from migrations.replaceable_objects import ReplaceableObject


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


# The store document of live stores only (store.deleted_at IS NULL), as this version
# installed it.
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
        WHERE store.id = requested_id AND store.deleted_at IS NULL
    );
END
$$''',
)


def upgrade():
    with op.batch_alter_table('stores', table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('expire_time', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('deleted_by', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_stores_expire_time'), ['expire_time'], unique=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_stores_deleted_by_users'), 'users', ['deleted_by'], ['id'],
            ondelete='SET NULL',
        )
        batch_op.drop_constraint('uq_stores_name', type_='unique')
        batch_op.create_index(
            'uq_stores_name_live', ['name'], unique=True,
            postgresql_where=sa.text('deleted_at IS NULL'),
            sqlite_where=sa.text('deleted_at IS NULL'),
        )
    if op.get_bind().dialect.name == 'postgresql':
        op.replace_sp(STORE_DOCUMENT, replaces='0006.STORE_DOCUMENT')


def downgrade():
    # Deleted stores cannot be kept without the columns that hide them: they go for good,
    # children first (SQLite runs migrations with its foreign keys off).
    deleted = 'SELECT id FROM stores WHERE deleted_at IS NOT NULL'
    op.execute(
        f'DELETE FROM items_tags WHERE item_id IN (SELECT id FROM items WHERE store_id IN ({deleted}))'
    )
    op.execute(f'DELETE FROM items WHERE store_id IN ({deleted})')
    op.execute(f'DELETE FROM tags WHERE store_id IN ({deleted})')
    op.execute('DELETE FROM stores WHERE deleted_at IS NOT NULL')
    if op.get_bind().dialect.name == 'postgresql':
        op.replace_sp(STORE_DOCUMENT, replace_with='0006.STORE_DOCUMENT')
    with op.batch_alter_table('stores', table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_index('uq_stores_name_live')
        batch_op.create_unique_constraint('uq_stores_name', ['name'])
        batch_op.drop_constraint(batch_op.f('fk_stores_deleted_by_users'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_stores_expire_time'))
        batch_op.drop_column('deleted_by')
        batch_op.drop_column('expire_time')
        batch_op.drop_column('deleted_at')
