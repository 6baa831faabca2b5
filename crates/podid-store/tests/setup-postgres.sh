#!/usr/bin/env bash
# Starts a local PostgreSQL on 127.0.0.1:5432 for podid-store's tests and
# creates role `podid` (password `podid`, CREATEDB) and database `podid_test`.
# Idempotent; run as root on Debian. Prints the URL to export as
# PODID_TEST_POSTGRES_URL.
set -euo pipefail

PORT=5432
ROLE=podid
PASSWORD=podid
DB=podid_test

if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
fi
VERSION=$(ls /usr/lib/postgresql | sort -V | tail -n1)

if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main"' | grep -q .; then
    pg_createcluster "$VERSION" main --port="$PORT" >&2
fi
CONF=/etc/postgresql/$VERSION/main/postgresql.conf
BEFORE=$(md5sum "$CONF")
# Loopback only; enough connections for the tests' parallel pools.
sed -i -E "s/^#?listen_addresses\s*=.*/listen_addresses = '127.0.0.1'/" "$CONF"
sed -i -E "s/^#?port\s*=.*/port = $PORT/" "$CONF"
sed -i -E "s/^#?max_connections\s*=.*/max_connections = 300/" "$CONF"

if pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" && $4 == "online"' | grep -q .; then
    if [ "$BEFORE" != "$(md5sum "$CONF")" ]; then pg_ctlcluster "$VERSION" main restart >&2; fi
else
    pg_ctlcluster "$VERSION" main start >&2
fi

for _ in $(seq 1 30); do
    if su postgres -c "psql -p $PORT -qtAc 'select 1'" >/dev/null 2>&1; then break; fi
    sleep 1
done

psql_admin() { su postgres -c "psql -p $PORT -v ON_ERROR_STOP=1 -qtA $*"; }

if [ "$(psql_admin "-c \"select 1 from pg_roles where rolname = '$ROLE'\"")" != "1" ]; then
    psql_admin "-c \"create role $ROLE with login createdb password '$PASSWORD'\""
else
    psql_admin "-c \"alter role $ROLE with login createdb password '$PASSWORD'\""
fi
if [ "$(psql_admin "-c \"select 1 from pg_database where datname = '$DB'\"")" != "1" ]; then
    psql_admin "-c \"create database $DB owner $ROLE\""
fi

echo "postgres://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
