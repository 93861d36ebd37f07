#!/bin/sh
# The container's command: migrate, then hand the process over to gunicorn so that it gets
# the signals. Its settings are ./gunicorn.conf.py, which gunicorn reads by itself.
set -e
# Migrations go straight to PostgreSQL when MIGRATIONS_DATABASE_URL says where, not through
# PgBouncer: a schema change holds its locks for as long as it needs, with no statement
# timeout, and should not take one of the few pooled server connections the API shares.
DATABASE_URL="${MIGRATIONS_DATABASE_URL:-$DATABASE_URL}" DATABASE_STATEMENT_TIMEOUT_MS=0 \
  flask db upgrade
# A database restored from the backups may hold stores erased since: they go again, before
# anything is served (the erasure log, ERASURE_LOG_PATH; docs/operations.md, "Backups").
# Cheap when there is nothing to do: a read of the log and of the erasures table.
DATABASE_URL="${MIGRATIONS_DATABASE_URL:-$DATABASE_URL}" DATABASE_STATEMENT_TIMEOUT_MS=0 \
  flask apply-erasures
# .env.example leaves WEB_CONCURRENCY empty (a worker per CPU, gunicorn.conf.py), and gunicorn
# reads the variable as a number before its configuration: empty, it is unset.
[ -n "${WEB_CONCURRENCY:-}" ] || unset WEB_CONCURRENCY
exec gunicorn 'app:create_app()'
