#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server on loopback for the tests and exports
# SYNCGATE_TEST_POSTGRES_URL; it is stopped and deleted when the sourcing shell exits.
# Installs Debian's postgresql package when no server is present (needs root).
set -euo pipefail

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "PostgreSQL server not found; install Debian's 'postgresql' package" >&2
    exit 1
  fi
  echo "==> installing PostgreSQL from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
PGBIN="$(pg_bin)"
SYNCGATE_PGDATA="$(mktemp -d /tmp/syncgate-pg.XXXXXX)"
pg_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$SYNCGATE_PGDATA"; fi
as_pg "$PGBIN/initdb" -D "$SYNCGATE_PGDATA" -A trust -U postgres --no-sync >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$SYNCGATE_PGDATA" -l "$SYNCGATE_PGDATA/server.log" -w -t 60 \
  -o "-p $pg_port -k $SYNCGATE_PGDATA -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
  start >/dev/null
"$PGBIN/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres syncgate_test
echo "==> PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port" >&2

syncgate_pg_stop() {
  as_pg "$PGBIN/pg_ctl" -D "$SYNCGATE_PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$SYNCGATE_PGDATA"
}
trap syncgate_pg_stop EXIT
export SYNCGATE_TEST_POSTGRES_URL="postgresql://postgres@127.0.0.1:$pg_port/syncgate_test"
