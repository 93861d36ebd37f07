#!/bin/sh
# pgBackRest in the deployment (docs/operations.md, "Backups in the deployment").
#   backup configure COMMAND...  write pgbackrest.conf from the environment, then run COMMAND:
#                                PostgreSQL's own start, whose archive_command reads it.
#   backup run                   write it, then back up on a schedule, for ever: each tick
#                                (every BACKUP_INCR_EVERY_HOURS) takes a full backup when the
#                                last is BACKUP_FULL_EVERY_HOURS old, else a differential when
#                                the last full or differential is BACKUP_DIFF_EVERY_HOURS old,
#                                else an incremental; and every BACKUP_VERIFY_EVERY_HOURS it
#                                checks archiving and verifies the repository. Each step logs
#                                one line; a failure is logged with its exit status and the
#                                loop goes on. After each tick it writes `pgbackrest info` as
#                                JSON to BACKUP_STATUS_PATH, if set, for the API's /metrics,
#                                and after each verify what it found to BACKUP_STATUS_PATH.verify.
# Its PostgreSQL: PGDATA (the data directory, the same path as the server's), PGHOST (its
# socket directory) and PGPORT, as POSTGRES_USER. A standby's loop takes no backup: under
# Patroni each node has one, and the primary's backs up.
set -eu

STANZA=stores
CONFIG=${PGBACKREST_CONFIG:-/etc/pgbackrest/pgbackrest.conf}

configure() {
  if [ -n "${BACKUP_ENCRYPTION_KEY:-}" ]; then
    cipher="repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=$BACKUP_ENCRYPTION_KEY"
  else
    cipher="repo1-cipher-type=none"
  fi
  # The key is in it: for postgres alone.
  umask 077
  cat >"$CONFIG" <<CONF
[global]
repo1-path=${BACKUP_REPOSITORY:-/var/lib/pgbackrest}
$cipher
# Full backups kept while younger than this many days, with the WAL that recovers from them.
repo1-retention-full-type=time
repo1-retention-full=${BACKUP_RETENTION_DAYS:-14}
compress-type=zst
# Logs to the container's output (the server log, for archive-push), no log files.
log-level-file=off
log-level-console=warn

[$STANZA]
pg1-path=${PGDATA:-/var/lib/postgresql/data}
pg1-socket-path=${PGHOST:-/var/run/postgresql}
pg1-port=${PGPORT:-5432}
pg1-user=${POSTGRES_USER:-postgres}
CONF
  # Written by the image's root before it becomes postgres, who runs pgbackrest.
  if [ "$(id -u)" = 0 ]; then chown postgres: "$CONFIG"; fi
}

hours() { awk -v hours="$1" 'BEGIN { printf "%d", hours * 3600 }'; }

say() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) backup: $*"; }

# The schedule's settings checked before the loop starts: awk reads a word as 0 hours, which
# would make a loop without pause.
check_schedule() {
  for name in BACKUP_INCR_EVERY_HOURS BACKUP_DIFF_EVERY_HOURS BACKUP_FULL_EVERY_HOURS \
    BACKUP_VERIFY_EVERY_HOURS; do
    eval "value=\${$name:-}"
    case $value in
    *[!0-9.]* | *.*.* | .)
      say "$name=$value is no number of hours (e.g. 24 or 0.5): not started" >&2
      exit 2
      ;;
    esac
  done
  if [ "$(hours "${BACKUP_INCR_EVERY_HOURS:-1}")" -lt 1 ]; then
    say "BACKUP_INCR_EVERY_HOURS=$BACKUP_INCR_EVERY_HOURS is under a second: not started" >&2
    exit 2
  fi
}

# Run a pgbackrest command and log one line: what, and whether it worked.
step() {
  started=$(date +%s)
  if pgbackrest_checked "$@"; then
    say "$* ok, $(($(date +%s) - started)) s"
  else
    say "$* FAILED (exit $?), $(($(date +%s) - started)) s"
    return 1
  fi
}

# pgbackrest --stanza=stores COMMAND...; verify's success is its report's: pgBackRest 2.45's
# verify exits with 0 on a damaged repository and says so only in its text report (a
# `status:` other than ok), which is printed then, and the command fails with 3.
pgbackrest_checked() {
  if [ "$1" != verify ]; then
    pgbackrest --stanza="$STANZA" "$@"
    return
  fi
  report=$(pgbackrest --stanza="$STANZA" --output=text --verbose "$@") || return
  echo "$report" | awk '/^ *status: / { seen = 1; if ($2 != "ok") bad = 1 }
    END { exit seen && !bad ? 0 : 3 }' || {
    echo "$report" >&2
    return 3
  }
}

# What the last verify found (ok or failed), for /metrics beside the status: a damaged
# repository is seen by more than the log.
write_verified() {
  [ -n "${BACKUP_STATUS_PATH:-}" ] || return 0
  echo "$1" >"$BACKUP_STATUS_PATH.verify.new" && chmod 644 "$BACKUP_STATUS_PATH.verify.new" &&
    mv "$BACKUP_STATUS_PATH.verify.new" "$BACKUP_STATUS_PATH.verify"
}

# When the last full and the last differential backup started (epoch seconds, 0: none), from
# the repository itself: the schedule goes on across restarts and failovers.
last_backups() {
  pgbackrest --stanza="$STANZA" --output=json info | perl -MJSON::PP -0777 -ne '
    my %last = (full => 0, diff => 0);
    for my $stanza (@{ decode_json($_) }) {
      $last{ $_->{type} } = $_->{timestamp}{start} for @{ $stanza->{backup} };
    }
    print "$last{full} $last{diff}\n";'
}

# The repository as pgBackRest sees it, for /metrics: replaced whole (a rename), readable by the
# API's user, so a scrape never reads half of it.
write_status() {
  [ -n "${BACKUP_STATUS_PATH:-}" ] || return 0
  if pgbackrest --stanza="$STANZA" --output=json info >"$BACKUP_STATUS_PATH.new" &&
    chmod 644 "$BACKUP_STATUS_PATH.new" && mv "$BACKUP_STATUS_PATH.new" "$BACKUP_STATUS_PATH"; then
    :
  else
    say "status for /metrics FAILED, $BACKUP_STATUS_PATH not written"
    rm -f "$BACKUP_STATUS_PATH.new"
  fi
}

tick() {
  standby=$(psql --no-psqlrc --tuples-only --no-align --dbname=postgres \
    --username="${POSTGRES_USER:-postgres}" --command='SELECT pg_is_in_recovery()') || {
    say "PostgreSQL unreachable, nothing done"
    return 1
  }
  if [ "$standby" = t ]; then
    say "a standby: the primary's backs up"
    return 0
  fi
  # Made when missing; a valid stanza is left as it is.
  step stanza-create || return 1
  now=$(date +%s)
  # Unread, they would end the loop (a bad number stops sh): the tick fails instead.
  last=$(last_backups) || {
    say "pgbackrest info FAILED, nothing done"
    return 1
  }
  set -- $last
  # A backup started at a tick is as old as the interval at the same tick later on.
  slack=$((interval / 2))
  if [ $((now - $1)) -ge $(($(hours "${BACKUP_FULL_EVERY_HOURS:-168}") - slack)) ]; then
    type=full
  elif [ $((now - ($1 > $2 ? $1 : $2))) -ge $(($(hours "${BACKUP_DIFF_EVERY_HOURS:-24}") - slack)) ]; then
    type=diff
  else
    type=incr
  fi
  status=0
  step backup --type="$type" || status=1
  if [ $((now - verified)) -ge $(($(hours "${BACKUP_VERIFY_EVERY_HOURS:-24}") - slack)) ]; then
    # check: WAL reaches the repository now; verify: what it holds is whole.
    if ! step check; then
      status=1
    elif step verify; then
      verified=$now
      write_verified ok
    else
      status=1
      write_verified failed
    fi
  fi
  return $status
}

case "${1:-}" in
configure)
  shift
  configure
  exec "$@"
  ;;
run)
  check_schedule
  configure
  interval=$(hours "${BACKUP_INCR_EVERY_HOURS:-1}")
  verified=0
  next=$(date +%s)
  while :; do
    tick || true
    write_status
    # On a fixed beat: a long backup does not push the next ones later.
    next=$((next + interval))
    pause=$((next - $(date +%s)))
    if [ "$pause" -gt 0 ]; then sleep "$pause"; else next=$(date +%s); fi
  done
  ;;
*)
  echo "usage: $0 configure COMMAND... | run" >&2
  exit 2
  ;;
esac
