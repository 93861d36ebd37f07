"""Items carry a sku, unique among their store's items; stores, items and tags the times
they were created and last changed, set by the database (a default, and a trigger on every
update, COPY's and plain SQL's too); items in the order of their changes, for clients that
sync (updated_after); store_document() shows them all

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 22:00:00

"""
import sqlalchemy as sa
from alembic import op

from migrations.replaceable_objects import ReplaceableObject


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


TABLES = ('stores', 'items', 'tags')
# Columns whose change is no change of the row's fields (models.timestamped, NO_CHANGE): a
# store's deletion, which a restore undoes.
NO_CHANGE = {'stores': ('deleted_at', 'expire_time', 'deleted_by'), 'items': (), 'tags': ()}
# SQLite's clock to the millisecond, written as SQLAlchemy writes datetimes there.
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f000', 'now')"
SKU = 'uq_items_store_id_sku'
# (name, columns): a syncing client's walk over all items, and over one store's.
IN_CHANGE_ORDER = (
    ('ix_items_updated_at_id', ['updated_at', 'id']),
    ('ix_items_store_id_updated_at_id', ['store_id', 'updated_at', 'id']),
)

STORE_DOCUMENT = ReplaceableObject(
    "store_document(requested_id integer)",
    r'''RETURNS text
LANGUAGE plpgsql STABLE STRICT
SET enable_seqscan = off AS $$
BEGIN
    RETURN (
        SELECT jsonb_build_object(
            'id', store.id,
            'name', store.name,
            'owner_id', store.owner_id,
            'created_at', to_char(store.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'updated_at', to_char(store.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
            'items', items.firsts - 10,
            'items_has_more', jsonb_array_length(items.firsts) > 10,
            'items_url', '/store/' || store.id || '/item',
            'tags', tags.firsts - 10,
            'tags_has_more', jsonb_array_length(tags.firsts) > 10,
            'tags_url', '/store/' || store.id || '/tag'
        )::text
        FROM stores store,
            (SELECT coalesce(jsonb_agg(item ORDER BY item.id), '[]') AS firsts FROM (
                SELECT id, name, price, description, sku, store_id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS updated_at FROM items
                WHERE store_id BETWEEN requested_id AND requested_id ORDER BY store_id, id LIMIT 11) item) items,
            (SELECT coalesce(jsonb_agg(tag ORDER BY tag.id), '[]') AS firsts FROM (
                SELECT id, name, store_id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS updated_at FROM tags
                WHERE store_id BETWEEN requested_id AND requested_id ORDER BY store_id, id LIMIT 11) tag) tags
        WHERE store.id = requested_id AND store.deleted_at IS NULL
    );
END
$$''',
)


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        upgrade_postgresql()
    else:
        upgrade_sqlite()
    op.create_index(
        SKU, 'items', ['store_id', 'sku'], unique=True,
        postgresql_where=sa.text('sku IS NOT NULL'), sqlite_where=sa.text('sku IS NOT NULL'),
    )
    for name, columns in IN_CHANGE_ORDER:
        op.create_index(name, 'items', columns)


def upgrade_postgresql():
    op.execute('ALTER TABLE items ADD COLUMN sku varchar(64)')
    # now() is stable: the columns are added without rewriting the tables, every row
    # that is there made and changed at the migration's time.
    for table in TABLES:
        op.execute(
            f'ALTER TABLE {table} ADD COLUMN created_at timestamptz NOT NULL DEFAULT now(),'
            ' ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now()'
        )
    # The database alone sets updated_at: the time of a change of anything but the
    # columns named as the trigger's arguments, else what it was.
    # (TG_ARGV is null, not empty, without arguments.)
    op.execute('''CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    unchanging text[] := coalesce(TG_ARGV, '{}') || '{updated_at}';
BEGIN
    IF to_jsonb(NEW) - unchanging IS DISTINCT FROM to_jsonb(OLD) - unchanging THEN
        NEW.updated_at := now();
    ELSE
        NEW.updated_at := OLD.updated_at;
    END IF;
    RETURN NEW;
END
$$''')
    for table in TABLES:
        arguments = ', '.join(f"'{column}'" for column in NO_CHANGE[table])
        op.execute(
            f'CREATE TRIGGER {table}_updated_at BEFORE UPDATE ON {table} FOR EACH ROW'
            f' EXECUTE FUNCTION set_updated_at({arguments})'
        )
    op.replace_sp(STORE_DOCUMENT, replaces='0014.STORE_DOCUMENT')


def upgrade_sqlite():
    # SQLite adds no column whose default is not a constant: batch mode copies each table
    # into a new one that has them (the rows there get the migration's time).
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate='always', table_kwargs={'sqlite_autoincrement': True}
        ) as batch:
            if table == 'items':
                batch.add_column(sa.Column('sku', sa.String(64)))
            for column in ('created_at', 'updated_at'):
                batch.add_column(sa.Column(
                    column, sa.DateTime(timezone=True), nullable=False,
                    server_default=sa.text(f'({SQLITE_NOW})'),
                ))
    # An UPDATE that does not set updated_at itself (the ORM's do when a field changed,
    # models.timestamped) and changes none of the NO_CHANGE columns.
    for table in TABLES:
        unchanged = ''.join(f' AND NEW.{column} IS OLD.{column}' for column in NO_CHANGE[table])
        op.execute(
            f'CREATE TRIGGER {table}_updated_at AFTER UPDATE ON {table} FOR EACH ROW'
            f' WHEN NEW.updated_at IS OLD.updated_at{unchanged} BEGIN'
            f' UPDATE {table} SET updated_at = {SQLITE_NOW} WHERE id = NEW.id; END'
        )


def downgrade():
    for name, _columns in IN_CHANGE_ORDER:
        op.drop_index(name, 'items')
    op.drop_index(SKU, 'items')
    for table in TABLES:
        op.execute(f'DROP TRIGGER {table}_updated_at' + (
            f' ON {table}' if op.get_bind().dialect.name == 'postgresql' else ''
        ))
    if op.get_bind().dialect.name == 'postgresql':
        op.replace_sp(STORE_DOCUMENT, replace_with='0014.STORE_DOCUMENT')
        op.execute('DROP FUNCTION set_updated_at()')
        for table in TABLES:
            op.execute(f'ALTER TABLE {table} DROP COLUMN created_at, DROP COLUMN updated_at')
        op.execute('ALTER TABLE items DROP COLUMN sku')
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate='always', table_kwargs={'sqlite_autoincrement': True}
        ) as batch:
            batch.drop_column('created_at')
            batch.drop_column('updated_at')
            if table == 'items':
                batch.drop_column('sku')
