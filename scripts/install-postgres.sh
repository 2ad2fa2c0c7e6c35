#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries for the tests' throw-away clusters, if they are missing.
# The tests start their own cluster (initdb + pg_ctl in a temp dir); this script never starts a server
# and stops any cluster the package's post-install may have started. Usage: bash scripts/install-postgres.sh
set -euo pipefail

have_server() { compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; }

if have_server; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-postgres: PostgreSQL server binaries are missing (/usr/lib/postgresql/*/bin/initdb);" \
       "run this script as root or install Debian's 'postgresql' package; PostgreSQL tests will skip" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install-postgres: no apt-get here; install PostgreSQL server binaries yourself" >&2
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
# Keep the post-install from starting a service: invoke-rc.d asks policy-rc.d, and 101 means "not now".
policy=/usr/sbin/policy-rc.d
own_policy=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  own_policy=1
fi
cleanup() { if [ -n "$own_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

echo "install-postgres: installing Debian's postgresql package" >&2
apt-get update -qq </dev/null
apt-get install -y -qq --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
  postgresql </dev/null >/dev/null

# The package creates a default cluster (port 5432); the tests never use it. Make sure it is not running,
# and on a machine booted with systemd, that it does not start at the next boot either.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemctl disable --now postgresql >/dev/null 2>&1 || true
fi
if command -v pg_lsclusters >/dev/null; then
  pg_lsclusters --no-header 2>/dev/null | while read -r version name _port status _rest; do
    if [ "$status" = online ]; then
      pg_ctlcluster "$version" "$name" stop || true
    fi
  done
fi

have_server || { echo "install-postgres: postgresql installed but no initdb found" >&2; exit 1; }
