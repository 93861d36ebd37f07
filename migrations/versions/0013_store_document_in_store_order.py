"""store_document() finds a store's first items and tags in the store's index order, whatever
plan it keeps (rendering/store_document.py, IN_STORE_ORDER)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 15:20:00

"""
from alembic import op

from migrations.replaceable_objects import ReplaceableObject
from rendering import store_document


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


STORE_DOCUMENT = ReplaceableObject(
    store_document.FUNCTION,
    store_document.function_sql(nested_limit=10).replace(store_document.INDEXES_ONLY, ''),
)


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.replace_sp(STORE_DOCUMENT, replaces='0007.STORE_DOCUMENT')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.replace_sp(STORE_DOCUMENT, replace_with='0007.STORE_DOCUMENT')
