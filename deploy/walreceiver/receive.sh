#!/bin/sh
# The zero-loss option's WAL receiver (docker-compose.yml's walreceiver service; docs/
# operations.md, "No write lost"): pg_receivewal streams the primary's WAL through a
# replication slot of its own into WAL_RECEIVER_DIRECTORY, flushing each write to disk and
# saying so at once (--synchronous). With the primary's synchronous_standby_names naming it
# (SYNCHRONOUS_WAL_RECEIVER=walreceiver), a commit returns only once the WAL that holds it is
# here. The slot keeps on the primary whatever the receiver has not yet had, across its
# restarts.
# Complete segments older than WAL_RECEIVER_KEEP_HOURS are deleted: archiving (archive_timeout,
# 60 s) has put them in pgBackRest's repository long before, and archiving that fails or
# hangs alerts within minutes (deploy/prometheus: ArchivingFailing, ArchivingStuck).
# Its primary: PRIMARY_HOST, PRIMARY_PORT, as the replication role, REPLICATION_PASSWORD.
set -eu

DIRECTORY=${WAL_RECEIVER_DIRECTORY:-/var/lib/walreceiver}
KEEP_MINUTES=$(awk -v hours="${WAL_RECEIVER_KEEP_HOURS:-24}" 'BEGIN { printf "%d", hours * 60 }')
export PGPASSWORD="$REPLICATION_PASSWORD"  # not in the command line, which ps shows
CONNECTION="host=$PRIMARY_HOST port=${PRIMARY_PORT:-5432} user=${REPLICATION_USER:-replicator} application_name=walreceiver"

pg_receivewal --dbname="$CONNECTION" --slot=walreceiver --create-slot --if-not-exists
(
  while :; do
    # Complete segments only (24 hex digits), never the one being written (.partial).
    find "$DIRECTORY" -maxdepth 1 -type f -name '????????????????????????' \
      -mmin +"$KEEP_MINUTES" -delete
    sleep 3600
  done
) &
exec pg_receivewal --dbname="$CONNECTION" --slot=walreceiver --synchronous \
  --directory="$DIRECTORY"
