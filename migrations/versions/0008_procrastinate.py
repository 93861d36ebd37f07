"""procrastinate's tables: the jobs that purge expired stores

The schema of the procrastinate version in requirements.txt. Upgrading procrastinate past a
version that changes its schema needs a migration of ours that runs its migration scripts
(procrastinate.schema.SchemaManager.get_migrations_path()). PostgreSQL only: on SQLite
`flask purge-deleted` purges.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 11:00:00

"""
from alembic import op
from procrastinate.schema import SchemaManager


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(SchemaManager.get_schema())


def downgrade():
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute(
        'DROP TABLE procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs,'
        ' procrastinate_workers CASCADE'
    )
    op.execute(
        r"""
        DO $$
        DECLARE function regprocedure;
        BEGIN
            FOR function IN
                SELECT oid::regprocedure FROM pg_proc WHERE proname LIKE 'procrastinate\_%'
            LOOP
                EXECUTE 'DROP FUNCTION ' || function;
            END LOOP;
        END
        $$
        """
    )
    op.execute(
        'DROP TYPE procrastinate_job_to_defer_v1, procrastinate_job_event_type,'
        ' procrastinate_job_status'
    )
