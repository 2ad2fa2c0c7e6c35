#!/usr/bin/env bash
# Run the service on http://127.0.0.1:5000/ with an embedded SQLite database (kefu.db), the deployed
# diagrams, the timer scheduler and demo users. Usage: bash scripts/run.sh [--port N]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
export KEFU_ENV=${KEFU_ENV:-demo}
export KEFU_DATABASE_URL=${KEFU_DATABASE_URL:-sqlite:///$PWD/kefu.db}
exec .venv/bin/kefu serve "$@"
