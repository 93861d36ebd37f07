#!/bin/sh
# Run once by the postgres image on the primary's first start (/docker-entrypoint-initdb.d):
# the role the replica streams WAL as, and the one pg_hba rule that lets it, by password.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v password="$REPLICATION_PASSWORD" <<'SQL'
CREATE ROLE replicator WITH REPLICATION LOGIN PASSWORD :'password';
SQL
echo "host replication replicator all scram-sha-256" >> "$PGDATA/pg_hba.conf"
