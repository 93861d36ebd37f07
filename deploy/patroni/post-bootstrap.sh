#!/bin/sh
# Run by Patroni once, on the first primary, with a connection string as $1: the API's role
# (DB_USER, DB_PASSWORD) and its database, as the postgres image makes them for compose's db.
set -eu
psql "$1" -v ON_ERROR_STOP=1 -v user="$DB_USER" -v password="$DB_PASSWORD" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'password';
CREATE DATABASE :"user" OWNER :"user";
SQL
