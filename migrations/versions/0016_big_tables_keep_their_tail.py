"""VACUUM leaves the empty end of items and items_tags in place (vacuum_truncate off): cutting
it off takes an ACCESS EXCLUSIVE lock that hot standbys replay, which waits for their long
queries while every read of the table there queues behind it (docs/operations.md, "Read
replicas")

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 18:00:00

"""
from alembic import op


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


TABLES = ('items', 'items_tags')


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        for table in TABLES:
            op.execute(f'ALTER TABLE {table} SET (vacuum_truncate = off)')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        for table in TABLES:
            op.execute(f'ALTER TABLE {table} RESET (vacuum_truncate)')
