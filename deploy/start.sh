#!/bin/sh
# The container's command: migrate, then hand the process over to gunicorn (settings in
# deploy/gunicorn.conf.py) so that it gets the signals.
set -e
# Migrations go straight to PostgreSQL when MIGRATIONS_DATABASE_URL says where, not through
# PgBouncer: a schema change holds its locks for as long as it needs, with no statement
# timeout, and should not take one of the few pooled server connections the API shares.
DATABASE_URL="${MIGRATIONS_DATABASE_URL:-$DATABASE_URL}" DATABASE_STATEMENT_TIMEOUT_MS=0 \
  flask db upgrade
exec gunicorn --config deploy/gunicorn.conf.py 'app:create_app()'
