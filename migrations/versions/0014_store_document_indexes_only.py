"""store_document() plans with indexes only: a plan kept from small tables does not scan
them once grown (rendering/store_document.py, INDEXES_ONLY)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 11:20:00

"""
from alembic import op

from migrations.replaceable_objects import ReplaceableObject
from rendering import store_document


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


STORE_DOCUMENT = ReplaceableObject(
    store_document.FUNCTION, store_document.function_sql(nested_limit=10)
)


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.replace_sp(STORE_DOCUMENT, replaces='0013.STORE_DOCUMENT')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.replace_sp(STORE_DOCUMENT, replace_with='0013.STORE_DOCUMENT')
