#!/bin/sh
# The restore service's start (docker-compose.yml, `docker compose run --rm restore COMMAND`):
# as root, postgres is made the owner of the repository (its files are the uid of the image
# that archived: 999 in deploy/postgres's, Debian's own in deploy/patroni's), then
# pgbackrest.conf is written from the environment (deploy/backup/backup.sh) and COMMAND runs,
# as root: restores run pgBackRest and the restored server as postgres (backups/restored.py).
set -eu

repository=${BACKUP_REPOSITORY:-/var/lib/pgbackrest}
owner=$(stat -c %u "$repository")
if [ "$(id -u)" = 0 ] && [ "$(id -u postgres)" != "$owner" ]; then
  usermod --uid "$owner" postgres
fi
exec backup configure "$@"
