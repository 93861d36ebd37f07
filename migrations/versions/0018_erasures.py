"""erasures: the stores an admin asked to erase (POST /store/<id>/purge), kept after their
purge, so that no restore brings one back (backups/erasures.py)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-04 03:30:00

"""
from alembic import op


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


TIMESTAMP = {'postgresql': 'timestamp with time zone', 'sqlite': 'DATETIME'}


def upgrade():
    timestamp = TIMESTAMP[op.get_bind().dialect.name]
    # No foreign keys: a row outlives its store's purge and its requester's account. A
    # store is its id and created_at: a database restored to an earlier time hands ids out
    # again.
    op.execute(f'''CREATE TABLE erasures (
    store_id integer NOT NULL,
    store_created_at {timestamp} NOT NULL,
    requested_at {timestamp} NOT NULL,
    requested_by integer,
    CONSTRAINT pk_erasures PRIMARY KEY (store_id, store_created_at)
)''')


def downgrade():
    op.execute('DROP TABLE erasures')
