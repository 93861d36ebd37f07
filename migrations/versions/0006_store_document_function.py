"""store_document(): GET /store/<id>'s JSON, rendered by PostgreSQL with a cached plan

The function and why it is one: rendering/store_document.py. This version renders deleted
stores too (there were none yet); 0007 replaces it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 09:00:00

"""
from alembic import op

from migrations.replaceable_objects import ReplaceableObject
from rendering import store_document

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

# Built with the nested limit of its time: the text of this version stays as it was.
STORE_DOCUMENT = ReplaceableObject(
    store_document.FUNCTION,
    store_document.function_sql(nested_limit=10)
    .replace(store_document.LIVE_ONLY, '')
    .replace(store_document.IN_STORE_ORDER, store_document.IN_ID_ORDER)
    .replace(store_document.INDEXES_ONLY, ''),
)


def upgrade():
    # SQLite has no functions of SQL: there StoreSchema renders the store.
    if op.get_bind().dialect.name == 'postgresql':
        op.create_sp(STORE_DOCUMENT)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.drop_sp(STORE_DOCUMENT)
