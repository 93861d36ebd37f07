#!/bin/sh
# nginx answers only the hosts the API serves: ALLOWED_HOSTS (.env.example), comma-separated,
# written into nginx.conf's map on the line marked "# ALLOWED_HOSTS"; then the command given
# (the image's: nginx).
set -eu
conf="${NGINX_CONF:-/etc/nginx/nginx.conf}"
entries=""
for host in $(echo "${ALLOWED_HOSTS:-localhost,127.0.0.1}" | tr ',' ' '); do
    case "$host" in
        *[!A-Za-z0-9.-]*) echo "ALLOWED_HOSTS: not a host name: $host" >&2; exit 1 ;;
    esac
    entries="$entries $host 1;"
done
if [ -z "$entries" ]; then
    echo "ALLOWED_HOSTS: name at least one host" >&2
    exit 1
fi
sed -i "s/^\( *\).*  # ALLOWED_HOSTS\$/\1${entries# }  # ALLOWED_HOSTS/" "$conf"
exec "$@"
