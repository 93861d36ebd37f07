"""SQLite never reuses the ids of deleted stores, items and tags

Without AUTOINCREMENT, SQLite hands the highest id to the next row once the row that had
it is deleted: a client's stale link to a deleted store would point at a new one.
PostgreSQL's sequences never go back, so there is nothing to change there.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 06:20:00

"""
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

TABLES = ("stores", "items", "tags")


def set_sqlite_autoincrement(enabled: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        # SQLite cannot alter a table's key: batch mode copies the table into a new one.
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": enabled}
        ):
            pass


def upgrade():
    set_sqlite_autoincrement(True)


def downgrade():
    set_sqlite_autoincrement(False)
