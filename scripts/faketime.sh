#!/usr/bin/env bash
# libfaketime, for the tests that run a gateway process whose host clock is set ahead
# (tests/test_processes.py: the processes share the database server's clock): installs
# Debian's libfaketime package when it is missing (needs root, as scripts/pg.sh does for
# PostgreSQL) and exports where the library is.
set -euo pipefail

faketime_lib() { ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -n 1; }

if [ -z "$(faketime_lib)" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "libfaketime not found; install Debian's 'libfaketime' package" >&2
    exit 1
  fi
  echo "==> installing libfaketime from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends libfaketime >&2
fi
export SYNCGATE_FAKETIME_LIB="$(faketime_lib)"
echo "==> libfaketime at $SYNCGATE_FAKETIME_LIB" >&2
