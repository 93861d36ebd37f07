#!/bin/sh
# The replica's first start copies the primary (pg_basebackup -R: it starts as a hot standby
# streaming from it); later starts find the copy in $PGDATA and just run. Then the command
# (the postgres image's own entrypoint and server).
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready --quiet --host "$PRIMARY_HOST" --port "$PRIMARY_PORT"; do sleep 1; done
  PGPASSWORD="$REPLICATION_PASSWORD" pg_basebackup --pgdata "$PGDATA" --write-recovery-conf \
    --wal-method stream --checkpoint fast \
    --host "$PRIMARY_HOST" --port "$PRIMARY_PORT" --username replicator --no-password
  chmod 700 "$PGDATA"
fi
exec "$@"
