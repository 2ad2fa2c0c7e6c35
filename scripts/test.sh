#!/usr/bin/env bash
# Install what the tests need into .venv and run the whole suite on SQLite and on PostgreSQL.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
export PATH="$PWD/.venv/bin:$PATH"
bash scripts/install-browser.sh || echo "test.sh: browser tests will be skipped (or fail under CI=true)" >&2
bash scripts/install-postgres.sh || [ "${CI:-}" != true ]  # server binaries for the PostgreSQL tests
# The whole suite twice: on SQLite, then on a throw-away PostgreSQL cluster (tests/pg.py starts it) with
# every database-backed test on PostgreSQL (KEFU_TEST_DATABASE=postgresql). Both must pass.
# KEFU_TEST_PASSES=sqlite (or postgresql) runs one pass only.
# Each pass spreads the tests over KEFU_TEST_WORKERS processes (pytest-xdist; default 2, one per core; 0 = none).
passes=${KEFU_TEST_PASSES:-sqlite postgresql}
workers=${KEFU_TEST_WORKERS:-2}
declare -A summary rc
for db in $passes; do
  echo "=== test pass: $db ==="
  log=$(mktemp)
  set +e
  follows=0
  [ "$db" = sqlite ] && [[ " $passes " == *" postgresql "* ]] && follows=1
  KEFU_TEST_DATABASE=$db KEFU_TEST_POSTGRESQL_PASS_FOLLOWS=$follows .venv/bin/python -m pytest -n "$workers" --dist load "$@" 2>&1 | tee "$log"
  rc[$db]=${PIPESTATUS[0]}
  set -e
  summary[$db]=$(grep -E '^=+ .*(passed|failed|error|skipped|deselected).* =+$|^[0-9]+ (passed|failed)' "$log" | tail -1)
  rm -f "$log"
done
status=0
echo "=== summary ==="
for db in $passes; do
  echo "$db: ${summary[$db]:-(no summary)} (exit ${rc[$db]})"
  [ "${rc[$db]}" = 0 ] || status=1
done
exit $status
