#!/usr/bin/env bash
# Install what the tests need into .venv and run the whole suite. Usage: bash scripts/test.sh [pytest args]
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
exec .venv/bin/python -m pytest "$@"
