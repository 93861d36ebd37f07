#!/bin/sh
# The one user PgBouncer lets in, with the password it also logs in to PostgreSQL with.
set -e
umask 077
printf '"%s" "%s"\n' "$DB_USER" "$DB_PASSWORD" > /tmp/users.txt
exec pgbouncer /etc/pgbouncer/pgbouncer.ini
